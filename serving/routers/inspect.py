"""POST /v1/stations/{station}/inspect: a frame in, a recorded verdict out."""

from __future__ import annotations

import asyncio

from fastapi import APIRouter, Depends, Header, HTTPException, Request, Response

from inspection.detect import imaging
from inspection.errors import ImageError, ImageTooLarge
from inspection.store.keys import ApiKey
from serving.auth import check_station, require
from serving.routers.inspections import to_schema
from serving.schemas import Inspection

router = APIRouter(tags=["inspect"])

ACCEPTED = ("image/jpeg", "image/png", "image/bmp", "multipart/form-data")
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


async def read_limited(request: Request, limit: int) -> bytes:
    """The body, refused with 413 as soon as it passes `limit` bytes (before it is all read)."""
    declared = request.headers.get("content-length")
    if declared and declared.isdigit() and int(declared) > limit:
        raise HTTPException(413, f"body of {int(declared):,} bytes is over the limit of {limit:,}")
    chunks, size = [], 0
    async for chunk in request.stream():
        size += len(chunk)
        if size > limit:
            raise HTTPException(413, f"body is over the limit of {limit:,} bytes")
        chunks.append(chunk)
    return b"".join(chunks)


async def frame_bytes(request: Request, limit: int) -> bytes:
    content_type = request.headers.get("content-type", "").split(";")[0].strip().lower()
    if content_type not in ACCEPTED:
        raise HTTPException(
            415, f"content type {content_type or 'missing'!r}: send image/jpeg, image/png, image/bmp "
                 "or multipart/form-data with a 'file' part")
    body = await read_limited(request, limit)
    if content_type != "multipart/form-data":
        return body
    request._body = body  # Starlette parses the form from the cached body
    try:
        form = await request.form(max_files=1, max_fields=10)
    except Exception as error:
        raise HTTPException(400, f"malformed multipart body: {error}") from error
    upload = form.get("file")
    if upload is None or isinstance(upload, str):
        raise HTTPException(400, "multipart body has no 'file' part holding the image")
    return await upload.read()


@router.post(
    "/v1/stations/{station}/inspect",
    response_model=Inspection,
    openapi_extra=_BODY,
    responses={400: {"description": "not a readable image"}, 401: {}, 403: {}, 404: {"description": "unknown station"},
               409: {"description": "station disabled"}, 413: {"description": "body or pixel count over the limit"},
               415: {"description": "unsupported content type"}, 503: {"description": "busy; Retry-After"},
               504: {"description": "deadline passed while queued"}},
)
async def inspect(
    station: str,
    request: Request,
    response: Response,
    key: ApiKey = Depends(require("station", "engineer")),
    x_part_id: str | None = Header(default=None, max_length=128, description="serial or lot of the part"),
    idempotency_key: str | None = Header(default=None, max_length=128,
                                         description="a retry with the same key returns the original record"),
):
    """Judge one frame: PASS, FAIL or REVIEW, recorded before the answer is sent."""
    state = request.app.state
    check_station(key, station)
    # A blank header is no header (an empty key would otherwise match every other blank one).
    idempotency_key = (idempotency_key or "").strip() or None
    x_part_id = (x_part_id or "").strip() or None
    # Database reads run in threads: the event loop serves every station and must never wait.
    found = await asyncio.to_thread(state.store.station, station)  # 404 for an unknown station
    if idempotency_key:  # an acknowledged frame's record is returned, even if the station is off now
        existing = await asyncio.to_thread(state.store.find_by_key, station, idempotency_key)
        if existing is not None:
            response.headers["Idempotent-Replayed"] = "true"
            return to_schema(existing)
    if not found.rules.enabled:
        raise HTTPException(409, f"station {station} is disabled; enable it in its rules")
    if state.manager.current is None:
        raise HTTPException(503, "no model loaded; promote one with qc models promote", headers={"Retry-After": "5"})
    data = await frame_bytes(request, state.settings.max_body_bytes)
    try:
        header = imaging.probe(data)
        imaging.check_size(header, max_pixels=state.settings.max_pixels)
        record, created = await state.inspector.inspect(
            station=found, data=data, header=header, part_id=x_part_id, idempotency_key=idempotency_key,
            request_id=getattr(request.state, "request_id", None))
    except ImageTooLarge:  # a decompression bomb, refused from its header
        state.metrics.rejected.labels(reason="too_many_pixels").inc()
        raise
    except ImageError:  # wrong magic bytes, truncated, corrupt: refused before anything is stored
        state.metrics.rejected.labels(reason="bad_image").inc()
        raise
    if not created:
        response.headers["Idempotent-Replayed"] = "true"
    return to_schema(record)
