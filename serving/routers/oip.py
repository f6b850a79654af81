"""Open Inference Protocol v2 (KServe / Triton HTTP). Placeholder until the OIP router lands."""

from fastapi import APIRouter

router = APIRouter(tags=["oip"])
