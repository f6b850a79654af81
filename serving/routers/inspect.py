"""POST /v1/stations/{station}/inspect: a frame in, a recorded verdict out.

What a frame passes before a model sees it, in order (each refusal stores nothing): the key
may post for the station (403), the station is within its fair share of the queue (429,
serving/admission.py), the body is an image within QC_MAX_BODY_BYTES (415, 413), its header
is readable with a size of at least 1x1 and at most QC_MAX_PIXELS (400, 413); then, in the
decode thread: the station exists (404), a frame sent again under an Idempotency-Key already
answered gets its record back, the station is enabled (409), the product it is judged with
(the X-Product header, else the station's current product, else none) has a profile there
(404), is enabled and names no model but the one served (409), what it decodes to fits the
process's decode budget (413, 503; serving/decode_budget.py), and its pixel data is whole
(400 "damaged JPEG: ...", or a REVIEW verdict where the station's rules say
`damaged_image: review`). The station's checks come after the body because they read the
database, and the decode thread does those reads and the decode in one hand-off. Those
checks are the frame's admission (serving/judging.py); this route only translates HTTP to
`Inspector.inspect` and back.
"""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Header, Request, Response

from inspection.detect import imaging
from inspection.errors import DamagedImage, ImageError, ImageTooLarge
from inspection.products import check_product_id
from serving import headers
from serving.bodies import IMAGE_BODY, frame_bytes
from serving.deps import StateDep, StationKey, check_station
from serving.schemas import Inspection

router = APIRouter(prefix="/v1/stations", tags=["inspect"])

PartId = Annotated[str | None, Header(
    max_length=2048, description="serial or lot of the part, at most 128 characters: UTF-8 bytes, "
    "or RFC 8187 notation UTF-8''%C3%84... for clients that send ASCII only")]
IdempotencyKey = Annotated[str | None, Header(max_length=128,
                                              description="a retry with the same key returns the original record")]
ProductHeader = Annotated[str | None, Header(
    max_length=64, description="the product on the line for this frame (a product with a profile at the "
    "station); overrides the station's current product (PUT /v1/stations/{station}/product)")]


def _product_name(raw: str | None) -> str | None:
    """The X-Product header's product (None when absent or blank); 422 naming the form."""
    value = (raw or "").strip()
    return check_product_id(value) if value else None


@router.post(
    "/{station}/inspect",
    response_model=Inspection,
    openapi_extra=IMAGE_BODY,
    responses={400: {"description": "not a readable image, or a damaged one (the reason says which)"},
               404: {"description": "unknown station, or a product without a profile at it"},
               409: {"description": "station or product disabled, the product's profile names another model, "
                                    "or the station has no reference image for a reference model"},
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
    x_product: ProductHeader = None,
) -> Inspection:
    """Judge one frame: PASS, FAIL or REVIEW, recorded before the answer is sent."""
    check_station(key, station)
    # A blank header is no header (an empty key would otherwise match every other blank one).
    idempotency_key = (idempotency_key or "").strip() or None
    x_part_id = headers.part_id(x_part_id)
    asked = _product_name(x_product)

    with state.admission.admit(f"station:{station}"):  # 429 for a station over its share
        data = await frame_bytes(request, state.settings.max_body_bytes, timeout_s=state.settings.body_timeout_s)
        try:
            header = imaging.probe(data)
            imaging.check_size(header, max_pixels=state.settings.max_pixels)
            record, created = await state.inspector.inspect(
                station=station, product=asked, reserve=state.decode_budget.reserve, data=data, header=header,
                part_id=x_part_id, idempotency_key=idempotency_key,
                request_id=getattr(request.state, "request_id", None))
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
