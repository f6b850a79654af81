"""Health and metrics. /healthz and /readyz need no key (load balancers and orchestrators
probe them); /metrics needs one, like every other route."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Depends, Request
from fastapi.responses import JSONResponse, PlainTextResponse, Response
from prometheus_client import CONTENT_TYPE_LATEST, generate_latest

from serving.auth import current_key

router = APIRouter(tags=["health"])


@router.get("/healthz")
def healthz() -> dict:
    """The process is up."""
    return {"status": "ok"}


async def readiness(request: Request) -> tuple[bool, dict]:
    state = request.app.state
    model = state.manager.current
    database = await asyncio.to_thread(state.db.ping)
    body = {
        "model": f"{model.name}@{model.version}" if model else None,
        "providers": model.detector.providers if model else [],
        "database": "ok" if database else "unreachable",
        "queue_depth": state.batcher.depth,
        "last_model_error": state.manager.last_error,
    }
    return bool(model and database), body


@router.get("/readyz")
async def readyz(request: Request):
    """Ready only with a model loaded and the database reachable."""
    ready, body = await readiness(request)
    return JSONResponse({"ready": ready, **body}, status_code=200 if ready else 503)


@router.get("/metrics", dependencies=[Depends(current_key)], response_class=PlainTextResponse)
def metrics(request: Request) -> Response:
    """Prometheus text format."""
    state = request.app.state
    state.metrics.queue_depth.set(state.batcher.depth)
    return Response(generate_latest(state.metrics.registry), media_type=CONTENT_TYPE_LATEST)
