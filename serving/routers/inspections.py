"""Reading inspection records and their images."""

from __future__ import annotations

from datetime import UTC, datetime

import cv2
from fastapi import APIRouter, HTTPException, Query
from fastapi.responses import Response

from inspection.detect import imaging
from inspection.detect.drawing import draw
from inspection.detections import Detections
from inspection.errors import ImageError, NotFound
from inspection.roles import Role
from inspection.rules import Verdict
from inspection.store.keys import ApiKey
from inspection.store.records import InspectionFilter, InspectionRecord, RecordStore
from serving.deps import ImagesDep, Reader, ReviewsDep, StoreDep, check_station, may_use_station
from serving.schemas import Inspection, InspectionDetail, InspectionPage, ReviewOut

router = APIRouter(prefix="/v1/inspections", tags=["inspections"])


def _naive_utc(value: datetime | None) -> datetime | None:
    if value is None or value.tzinfo is None:
        return value
    try:
        return value.astimezone(UTC).replace(tzinfo=None)
    except OverflowError:  # e.g. 0001-01-01T00:00+01:00 lies before datetime.min in UTC
        return datetime.min if value.year < 5000 else datetime.max


@router.get("", response_model=InspectionPage)
def list_inspections(
    store: StoreDep,
    key: Reader,
    station: str | None = Query(default=None, max_length=64),
    verdict: Verdict | None = None,
    class_name: str | None = Query(default=None, alias="class", max_length=64),
    part_id: str | None = Query(default=None, max_length=128),
    since: datetime | None = Query(default=None, description="ISO 8601, inclusive"),
    until: datetime | None = Query(default=None, description="ISO 8601, exclusive"),
    limit: int = Query(default=50, ge=1, le=500),
    cursor: str | None = Query(default=None, max_length=32),
):
    """Inspections, newest first, filtered and paginated."""
    if key.role is Role.STATION:
        if station is None:
            raise HTTPException(403, "a station key must name one of its stations (?station=)")
        check_station(key, station)
    where = InspectionFilter(station=station, verdict=verdict, class_name=class_name, part_id=part_id,
                             since=_naive_utc(since), until=_naive_utc(until))
    records, next_cursor = store.list_inspections(where, limit=limit, cursor=cursor)
    return InspectionPage(items=[Inspection.of(r) for r in records], next_cursor=next_cursor)


def _readable(store: RecordStore, key: ApiKey, inspection_id: str) -> InspectionRecord:
    record = store.inspection(inspection_id)
    if not may_use_station(key, record.station_id):
        raise NotFound(f"inspection {inspection_id} does not exist")  # do not confirm other stations' ids
    return record


@router.get("/{inspection_id}", response_model=InspectionDetail)
def get_inspection(inspection_id: str, store: StoreDep, reviews: ReviewsDep, key: Reader) -> InspectionDetail:
    """The record as it was answered, with its latest review decision."""
    record = _readable(store, key, inspection_id)
    trail = reviews.history(inspection_id)
    return InspectionDetail(**Inspection.of(record).model_dump(),
                            latest_review=ReviewOut.of(trail[-1]) if trail else None, reviews=len(trail))


@router.get("/{inspection_id}/image",
            responses={200: {"content": {"image/jpeg": {}, "image/png": {}, "image/bmp": {}}}})
def get_image(inspection_id: str, store: StoreDep, images: ImagesDep, key: Reader,
              boxes: bool = False) -> Response:
    """The stored frame; `?boxes=true` draws the counted detections on it (as JPEG)."""
    record = _readable(store, key, inspection_id)
    if record.image_sha256 is None:
        raise NotFound(f"inspection {inspection_id} has no stored image (PASS frames are sampled)")
    data = images.read(record.image_sha256, record.image_format)
    media = imaging.CONTENT_TYPES.get(record.image_format or "", "image/jpeg")
    if not boxes:
        return Response(content=data, media_type=media)
    try:
        image = imaging.decode(data)
    except ImageError as error:  # the file was damaged after it was stored
        # Not the client's fault: a 500 that says what is damaged, rather than a crash in draw().
        raise HTTPException(500, f"stored image {record.image_sha256} of inspection {inspection_id} is "
                                 f"damaged ({error}); fetch it without ?boxes=true to see the bytes") from error
    names = {d["class_id"]: d["class"] for d in record.detections}
    detections = Detections.from_records(record.detections, names=names, image_wh=(record.width, record.height))
    ok, encoded = cv2.imencode(".jpg", draw(image, detections), [cv2.IMWRITE_JPEG_QUALITY, 90])
    return Response(content=encoded.tobytes(), media_type="image/jpeg")
