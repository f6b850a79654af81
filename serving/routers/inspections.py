"""Reading inspection records and their images."""

from __future__ import annotations

from datetime import UTC, datetime

import cv2
from fastapi import APIRouter, HTTPException, Query
from fastapi.responses import Response

from inspection.detect import imaging
from inspection.detect.drawing import draw
from inspection.detections import Detections
from inspection.errors import ImageError, ImageTooLarge, NotFound
from inspection.roles import Role
from inspection.rules import Verdict
from inspection.store.keys import ApiKey
from inspection.store.records import InspectionFilter, InspectionRecord, RecordStore
from serving.deps import (
    AnomalyMapsDep,
    ImagesDep,
    Reader,
    ReviewsDep,
    StateDep,
    StoreDep,
    check_station,
    may_use_station,
)
from serving.display import DISPLAY_MAX_SIDE, display_reduction
from serving.schemas import Inspection, InspectionDetail, InspectionPage, IsoTime, ReviewOut

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
    product: str | None = Query(default=None, max_length=64, description="frames judged as this product"),
    since: IsoTime | None = Query(default=None, description="ISO 8601, inclusive"),
    until: IsoTime | None = Query(default=None, description="ISO 8601, exclusive"),
    limit: int = Query(default=50, ge=1, le=500),
    cursor: str | None = Query(default=None, max_length=32),
):
    """Inspections, newest first, filtered and paginated."""
    if key.role is Role.STATION:
        if station is None:
            raise HTTPException(403, "a station key must name one of its stations (?station=)")
        check_station(key, station)
    where = InspectionFilter(station=station, verdict=verdict, class_name=class_name, part_id=part_id,
                             since=_naive_utc(since), until=_naive_utc(until), product=product)
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
def get_image(inspection_id: str, store: StoreDep, images: ImagesDep, state: StateDep, key: Reader,
              boxes: bool = False) -> Response:
    """The stored frame; `?boxes=true` draws the counted detections on it (as JPEG, at most
    2048 pixels on its longer side)."""
    record = _readable(store, key, inspection_id)
    if record.image_sha256 is None:
        raise NotFound(f"inspection {inspection_id} has no stored image (PASS frames are sampled)")
    data = images.read(record.image_sha256, record.image_format)
    media = imaging.CONTENT_TYPES.get(record.image_format or "", "image/jpeg")
    if not boxes:
        return Response(content=data, media_type=media)
    try:
        header = imaging.probe(data)
        reduce = display_reduction(header)
        with state.decode_budget.reserve(header.decode_cost(reduce)):  # 503 when others hold it
            image = imaging.decode(data, reduce=reduce, header=header, max_pixels=state.settings.max_pixels)
            return _drawn(image, record)
    except ImageTooLarge:  # over the decode budget: 413, as for a frame posted now
        raise
    except ImageError as error:  # the file was damaged after it was stored
        # Not the client's fault: a 500 that says what is damaged, rather than a crash in draw().
        raise HTTPException(500, f"stored image {record.image_sha256} of inspection {inspection_id} is "
                                 f"damaged ({error}); fetch it without ?boxes=true to see the bytes") from error


@router.get("/{inspection_id}/anomaly.png", responses={200: {"content": {"image/png": {}}}})
def get_anomaly_map(inspection_id: str, store: StoreDep, images: ImagesDep, state: StateDep,
                    maps: AnomalyMapsDep, key: Reader) -> Response:
    """The anomaly map of a frame judged by a good-only model: a transparent PNG the size of
    `/image?boxes=true` (at most 2048 pixels on its longer side), warm where the frame is
    unlike good, to lay over the frame. 404 for a frame judged by another model, or whose
    image was not kept."""
    record = _readable(store, key, inspection_id)
    png = maps.for_record(record, images, budget=state.decode_budget, max_side=DISPLAY_MAX_SIDE,
                          max_pixels=state.settings.max_pixels, reduction=display_reduction)
    return Response(content=png, media_type="image/png", headers={"Cache-Control": "private, max-age=3600"})


def _drawn(image, record: InspectionRecord) -> Response:
    """The record's detections drawn on `image`, which may be smaller than the frame was."""
    height, width = image.shape[:2]
    scale = min(1.0, DISPLAY_MAX_SIDE / max(width, height))
    if scale < 1.0:
        width, height = max(1, round(width * scale)), max(1, round(height * scale))
        image = cv2.resize(image, (width, height), interpolation=cv2.INTER_AREA)
    sx, sy = width / max(1, record.width), height / max(1, record.height)
    shown = [{**d, "box": [d["box"][0] * sx, d["box"][1] * sy, d["box"][2] * sx, d["box"][3] * sy]}
             for d in record.detections]
    names = {d["class_id"]: d["class"] for d in record.detections}
    detections = Detections.from_records(shown, names=names, image_wh=(width, height))
    _, encoded = cv2.imencode(".jpg", draw(image, detections), [cv2.IMWRITE_JPEG_QUALITY, 90])
    return Response(content=encoded.tobytes(), media_type="image/jpeg")
