"""POST /v1/stations/{station}/inspect: a frame in, a recorded verdict out.

What a frame passes before a model sees it, in order (each refusal stores nothing): the key
may post for the station (403), the station exists (404) and is enabled (409), the station
is within its fair share of the queue (429, serving/admission.py), the body is an image
within QC_MAX_BODY_BYTES (415, 413), its header is readable with a size of at least 1x1 and
at most QC_MAX_PIXELS (400, 413), what it decodes to fits the process's decode budget (413,
503; serving/decode_budget.py), and its pixel data is whole (400 "damaged JPEG: ...", or a
REVIEW verdict where the station's rules say `damaged_image: review`).
"""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import APIRouter, Header, HTTPException, Request, Response

from inspection.detect import imaging
from inspection.errors import DamagedImage, ImageError, ImageTooLarge
from serving import headers
from serving.bodies import frame_bytes
from serving.deps import StateDep, StationKey, check_station
from serving.pipeline import decoded_pixels
from serving.schemas import Inspection

router = APIRouter(prefix="/v1/stations", tags=["inspect"])

_BINARY = {"schema": {"type": "string", "format": "binary"}}
_BODY = {
    "requestBody": {
        "required": True,
        "content": {
            "image/jpeg": _BINARY,
            "image/png": _BINARY,
            "image/bmp": _BINARY,
            "multipart/form-data": {
                "schema": {"type": "object", "properties": {"file": {"type": "string", "format": "binary"}},
                           "required": ["file"]}
            },
        },
    }
}
PartId = Annotated[str | None, Header(
    max_length=2048, description="serial or lot of the part, at most 128 characters: UTF-8 bytes, "
    "or RFC 8187 notation UTF-8''%C3%84... for clients that send ASCII only")]
IdempotencyKey = Annotated[str | None, Header(max_length=128,
                                              description="a retry with the same key returns the original record")]


@router.post(
    "/{station}/inspect",
    response_model=Inspection,
    openapi_extra=_BODY,
    responses={400: {"description": "not a readable image, or a damaged one (the reason says which)"},
               404: {"description": "unknown station"},
               409: {"description": "station disabled, or it has no reference image for a reference model"},
               413: {"description": "body or pixel count over the limit"},
               415: {"description": "unsupported content type"},
               429: {"description": "the station is over its fair share of the queue; Retry-After"},
               503: {"description": "busy; Retry-After"}, 504: {"description": "deadline passed while queued"}},
)
async def inspect(
    station: str,
    request: Request,
    response: Response,
    state: StateDep,
    key: StationKey,
    x_part_id: PartId = None,
    idempotency_key: IdempotencyKey = None,
) -> Inspection:
    """Judge one frame: PASS, FAIL or REVIEW, recorded before the answer is sent."""
    check_station(key, station)
    # A blank header is no header (an empty key would otherwise match every other blank one).
    idempotency_key = (idempotency_key or "").strip() or None
    x_part_id = headers.part_id(x_part_id)
    # Database reads run in threads: the event loop serves every station and must never wait.
    # One thread hand-off for both reads (each costs more CPU than a cached read): 404 for an
    # unknown station, then the record of an acknowledged frame, returned even if the station
    # is off now.
    found, existing = await asyncio.to_thread(
        lambda: (state.store.station(station),
                 state.store.find_by_key(station, idempotency_key) if idempotency_key else None))
    if existing is not None:
        response.headers["Idempotent-Replayed"] = "true"
        return Inspection.of(existing)
    if not found.rules.enabled:
        raise HTTPException(409, f"station {station} is disabled; enable it in its rules")
    if state.manager.current is None:
        raise HTTPException(503, "no model loaded; promote one with qc models promote", headers={"Retry-After": "5"})
    if state.manager.loaded.detector.needs_reference and found.reference_version is None:
        raise HTTPException(409, f"station {station} has no reference image and the model in production "
                                 f"judges frames against one; register it with qc stations reference "
                                 f"{station} GOLDEN.png (PUT /v1/stations/{station}/reference)")
    with state.admission.admit(f"station:{station}"):  # 429 for a station over its share
        data = await frame_bytes(request, state.settings.max_body_bytes, timeout_s=state.settings.body_timeout_s)
        try:
            header = imaging.probe(data)
            imaging.check_size(header, max_pixels=state.settings.max_pixels)
            pixels = decoded_pixels(state.manager.loaded.detector, header, state.settings,
                                    whole=found.rules.tiling is not None)
            with state.decode_budget.reserve(pixels):  # held until the record is committed
                record, created = await state.inspector.inspect(
                    station=found, data=data, header=header, part_id=x_part_id,
                    idempotency_key=idempotency_key, request_id=getattr(request.state, "request_id", None))
        except ImageTooLarge:  # a decompression bomb, refused from its header
            state.metrics.rejected.labels(reason="too_many_pixels").inc()
            raise
        except DamagedImage:  # whole header, broken pixel data: counted by the inspector
            state.metrics.rejected.labels(reason="damaged_image").inc()
            raise
        except ImageError:  # wrong magic bytes, broken header: refused before anything is stored
            state.metrics.rejected.labels(reason="bad_image").inc()
            raise
    if not created:
        response.headers["Idempotent-Replayed"] = "true"
    return Inspection.of(record)
