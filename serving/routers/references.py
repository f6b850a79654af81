"""A station's reference image (its golden part), versioned like its rules.

    PUT /v1/stations/{station}/reference         engineer: a new version (image body)
    GET /v1/stations/{station}/reference         the version in use (404: none)
    GET /v1/stations/{station}/reference/image   its bytes, as registered
    GET /v1/stations/{station}/references        every version, oldest first

A reference is checked as a frame is (a readable, whole image within QC_MAX_PIXELS) and
against the model in production: a frame must be able to align to it, so its size must have
the aspect of the station's frames, which the service cannot know in advance; the first
frames' `alignment_score` shows a wrong one at once (and judges them REVIEW, never PASS).
"""

from __future__ import annotations

import asyncio
from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, Request, Response

from inspection.detect import imaging
from serving.bodies import IMAGE_BODY, frame_bytes
from serving.deps import Engineer, ImagesDep, Reader, ReferencesDep, StateDep, check_station
from serving.schemas import StationReferenceOut

router = APIRouter(prefix="/v1/stations", tags=["stations"])

# Bounded as the database's 64-bit integers are: a larger number is a 422, not a 500.
ReferenceVersion = Annotated[int | None, Query(ge=1, le=2**63 - 1, description="a version; none: the one in use")]


@router.put("/{station}/reference", response_model=StationReferenceOut, openapi_extra=IMAGE_BODY,
            responses={400: {"description": "not a readable, whole image"}, 404: {"description": "unknown station"},
                       413: {"description": "body or pixel count over the limit"},
                       415: {"description": "unsupported content type"}})
async def set_reference(station: str, request: Request, state: StateDep, images: ImagesDep,
                        key: Engineer) -> StationReferenceOut:
    """Register the station's golden part: frames arriving next are judged against it by a
    reference model, and record its version."""
    await asyncio.to_thread(state.store.station, station)  # 404 before the body is read
    data = await frame_bytes(request, state.settings.max_body_bytes, timeout_s=state.settings.body_timeout_s)
    header = imaging.probe(data)
    imaging.check_size(header, max_pixels=state.settings.max_pixels)

    def store() -> StationReferenceOut:
        with state.decode_budget.reserve(header.decode_cost()):  # shared with every decode: 413, 503
            imaging.decode(data, max_pixels=state.settings.max_pixels, header=header)  # whole, or 400
        sha = images.put(data, header.format)  # the image first: a row never names a missing file
        reference = state.references.set(
            station, image_sha256=sha, image_format=header.format, image_wh=(header.width, header.height),
            created_by=key.id)
        return StationReferenceOut(**reference.to_json())

    return await asyncio.to_thread(store)


@router.get("/{station}/reference", response_model=StationReferenceOut)
async def get_reference(station: str, references: ReferencesDep, key: Reader) -> StationReferenceOut:
    check_station(key, station)
    reference = await asyncio.to_thread(references.current, station)
    if reference is None:
        raise HTTPException(404, f"station {station} has no reference image; register one with "
                                 f"qc stations reference {station} GOLDEN.png")
    return StationReferenceOut(**reference.to_json())


@router.get("/{station}/reference/image", response_class=Response,
            responses={200: {"content": {"image/jpeg": {}, "image/png": {}, "image/bmp": {}}}})
async def reference_image(station: str, references: ReferencesDep, images: ImagesDep, key: Reader,
                          version: ReferenceVersion = None) -> Response:
    """The reference image's bytes (the version in use, or `?version=`)."""
    check_station(key, station)

    def read() -> tuple[bytes, str]:
        reference = references.get(station, version) if version is not None else references.current(station)
        if reference is None:
            raise HTTPException(404, f"station {station} has no reference image")
        return images.read(reference.image_sha256, reference.image_format), reference.image_format

    data, image_format = await asyncio.to_thread(read)
    return Response(data, media_type=f"image/{image_format}")


@router.get("/{station}/references", response_model=list[StationReferenceOut])
async def reference_history(station: str, references: ReferencesDep, key: Reader) -> list[StationReferenceOut]:
    check_station(key, station)
    history = await asyncio.to_thread(references.history, station)
    return [StationReferenceOut(**reference.to_json()) for reference in history]
