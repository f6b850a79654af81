"""Request and response bodies, as they appear in the OpenAPI schema (/docs).

Every field a client sends is bounded (a 1 MB description, a key scoped to 10,000 stations
were accepted before, issue 9): over a bound is a 422 naming the field and the limit.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated, Any, overload

from pydantic import AfterValidator, BaseModel, BeforeValidator, Field

from inspection.products import PRODUCT_ID, ProductProfile
from inspection.roles import Role
from inspection.rules import StationRules, Verdict
from inspection.store.jobs import Job, JobState
from inspection.store.keys import ApiKey
from inspection.store.products import Product
from inspection.store.records import STATION_ID, InspectionRecord, Station
from inspection.store.reviews import BoxCorrection, BoxDecision, Disposition, FrameDecision, Review
from inspection.store.schema import SQL_INT_MAX
from inspection.store.stations_health import StationHealth, parse_shift


def _iso_8601(value: object) -> object:
    """Pydantic's lax mode reads "0.5" as a Unix time (1970); a time filter wants a date."""
    if isinstance(value, (str, bytes)) and not re.match(r"^\s*\d{4}-\d{2}-\d{2}", str(value)):
        raise ValueError("not an ISO 8601 time; send e.g. 2026-11-30T08:00:00Z")
    return value


IsoTime = Annotated[datetime, BeforeValidator(_iso_8601)]
"""A date-time given as ISO 8601 text (a bare number is refused, not read as seconds since 1970)."""


class Detection(BaseModel):
    class_name: str = Field(alias="class")
    class_id: int
    confidence: float
    box: list[float] = Field(description="x1, y1, x2, y2 in the original image's pixels")
    area: float | None = Field(default=None, description="in the station's area unit (px2 or mm2)")

    model_config = {"populate_by_name": True}


class ModelRef(BaseModel):
    name: str
    version: str


class ReferenceUse(BaseModel):
    version: int
    alignment_score: float | None = Field(description="0..1; below the rules' min_alignment: REVIEW")
    alignment_shift: float | None = Field(description="pixels the reference moved to meet the frame")


class Inspection(BaseModel):
    id: str
    station: str
    part_id: str | None
    verdict: Verdict
    rule: str = Field(description="the rule that decided, in words")
    detections: list[Detection]
    model: ModelRef
    rules_version: int
    product: str | None = Field(default=None, description="the product judged; null: none")
    product_version: int | None = Field(default=None, description="the product profile version that judged it")
    width: int
    height: int
    image_stored: bool
    created_at: str
    timings: dict[str, float] = Field(
        description="decode_ms, queue_ms, inference_ms, postprocess_ms, store_ms, total_ms (ms); batch_size"
    )
    reference: ReferenceUse | None = Field(
        default=None, description="the station reference the frame was judged against; null: none")

    @classmethod
    def of(cls, record: InspectionRecord) -> Inspection:
        return cls(
            id=record.id, station=record.station_id, part_id=record.part_id, verdict=record.verdict,
            rule=record.rule, detections=record.detections,
            model=ModelRef(name=record.model_name, version=record.model_version),
            rules_version=record.rules_version, product=record.product, product_version=record.product_version,
            width=record.width, height=record.height, image_stored=record.image_sha256 is not None,
            created_at=record.created_at.isoformat(timespec="milliseconds") + "Z",
            timings={k: round(float(v), 3) for k, v in record.timings.items()},
            reference=None if record.reference_version is None else ReferenceUse(
                version=record.reference_version, alignment_score=record.alignment_score,
                alignment_shift=record.alignment_shift),
        )


class InspectionPage(BaseModel):
    items: list[Inspection]
    next_cursor: str | None = Field(description="pass as ?cursor= for the next page; null at the end")


MAX_DESCRIPTION = 1000
MAX_KEY_STATIONS = 256
StationId = Annotated[str, Field(pattern=f"^{STATION_ID.pattern}$")]


class StationIn(BaseModel):
    id: StationId
    description: str = Field(default="", max_length=MAX_DESCRIPTION)
    rules: StationRules = Field(default_factory=StationRules)


def _shift(value: str | None) -> str | None:
    if value is not None:
        parse_shift(value)  # ValueError -> 422 naming the field
    return value


def _timestamp(value: str | None) -> str | None:
    if value is not None:
        try:
            datetime.fromisoformat(value.replace("Z", "+00:00"))
        except ValueError:
            raise ValueError("not an ISO 8601 time; send e.g. 2026-11-30T08:00:00.123Z") from None
    return value


Shift = Annotated[str | None, Field(max_length=11, description="HH:MM-HH:MM UTC when silence is flagged; "
                                                               "null: always"), AfterValidator(_shift)]
Timestamp = Annotated[str | None, Field(max_length=40), AfterValidator(_timestamp)]
Counter = Annotated[int, Field(ge=0, le=SQL_INT_MAX)]


class HeartbeatIn(BaseModel):
    """What a station agent reports every interval (agent/runner.py `Agent.health`). Every
    field is bounded: the station list shows it to every caller (issue 25)."""

    agent_version: str = Field(max_length=32)
    interval_s: float = Field(gt=0, le=86400, description="seconds between beats")
    shift: Shift = None
    last_capture_at: Timestamp = None
    last_verdict_at: Timestamp = None
    spool_depth: Counter = 0
    dropped: Counter = 0
    deadline_misses: Counter = 0
    rejected: Counter = 0
    captured: Counter = 0
    source_problem: str | None = Field(default=None, max_length=1000)
    service_problem: str | None = Field(default=None, max_length=1000)

    model_config = {"extra": "ignore"}  # a newer agent may report more


class StationHealthOut(BaseModel):
    last_seen_at: str
    silent: bool = Field(description="no heartbeat for 3 intervals during the station's shift")
    agent_version: str
    interval_s: float
    shift: str | None
    last_capture_at: str | None = None
    last_verdict_at: str | None = None
    spool_depth: int = 0
    dropped: int = 0
    deadline_misses: int = 0
    rejected: int = 0
    source_problem: str | None = None
    service_problem: str | None = None

    @overload
    @classmethod
    def of(cls, health: StationHealth) -> StationHealthOut: ...

    @overload
    @classmethod
    def of(cls, health: None) -> None: ...

    @classmethod
    def of(cls, health: StationHealth | None) -> StationHealthOut | None:
        if health is None:
            return None
        known = {k: v for k, v in health.counters.items() if k in cls.model_fields}
        return cls(**known, last_seen_at=health.last_seen_at.isoformat(timespec="milliseconds") + "Z",
                   silent=health.silent(), agent_version=health.agent_version, interval_s=health.interval_s,
                   shift=health.shift)


class StationOut(BaseModel):
    id: str
    description: str
    rules_version: int
    rules: StationRules
    created_at: str
    reference_version: int | None = Field(default=None, description="its golden part in use; null: none")
    product: str | None = Field(default=None, description="the product on the line now; null: none "
                                "(frames are judged with the station's rules)")
    health: StationHealthOut | None = Field(default=None, description="the agent's last heartbeat; null: none yet")

    @classmethod
    def of(cls, station: Station, health: StationHealth | None = None) -> StationOut:
        return cls(id=station.id, description=station.description, rules_version=station.rules_version,
                   rules=station.rules, created_at=station.created_at.isoformat() + "Z",
                   product=station.product, health=StationHealthOut.of(health),
                   reference_version=station.reference_version)


class StationReferenceOut(BaseModel):
    station: str
    version: int
    image_sha256: str
    image_format: str
    width: int
    height: int
    created_at: str
    created_by: str | None


ProductId = Annotated[str, Field(pattern=f"^{PRODUCT_ID.pattern}$", description="e.g. m8-bolt")]


class ProductSelection(BaseModel):
    """The changeover: which product is on the line now."""

    product: ProductId | None = Field(description="a product with a profile at the station; null: none "
                                      "(the station's own rules)")


class ProductOut(BaseModel):
    station: str
    product: str
    version: int
    profile: ProductProfile
    created_at: str
    created_by: str | None

    @classmethod
    def of(cls, product: Product) -> ProductOut:
        return cls(station=product.station_id, product=product.name, version=product.version,
                   profile=product.profile, created_at=product.created_at.isoformat() + "Z",
                   created_by=product.created_by)


class ProductsOut(BaseModel):
    selected: str | None = Field(description="the product on the line now; null: none")
    products: list[ProductOut] = Field(description="the newest profile version of each product, by name")


class KeyIn(BaseModel):
    role: Role
    stations: list[StationId] = Field(default_factory=list, max_length=MAX_KEY_STATIONS,
                                      description="the stations a station key may post for")
    name: str = Field(default="", max_length=128)


class KeyOut(BaseModel):
    id: str
    role: Role
    stations: list[str]
    name: str
    created_at: str
    revoked: bool

    @classmethod
    def of(cls, key: ApiKey) -> KeyOut:
        return cls(id=key.id, role=key.role, stations=key.stations, name=key.name,
                   created_at=key.created_at.isoformat() + "Z", revoked=key.revoked_at is not None)


class PromoteIn(BaseModel):
    version: str = Field(pattern=r"^v\d+$")


class ShadowIn(BaseModel):
    ref: str | None = Field(default=None, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}(@[A-Za-z0-9]+)?$",
                            description="registry ref name@version; null switches shadow off")


class Problem(BaseModel):
    """Every refusal of a /v1 route: a reason in words, or FastAPI's list of field problems
    for a request that does not fit the schema (422)."""

    detail: str | list[dict]


class OIPProblem(BaseModel):
    """Every refusal of a /v2 route, in the Open Inference Protocol's shape."""

    error: str


def problems(*statuses: int, model: type[BaseModel] = Problem) -> dict[int | str, dict]:
    """OpenAPI `responses` for refusals, so that every status the service answers is declared."""
    words = {400: "bad request (the reason says what)", 401: "missing or invalid API key",
             403: "the key's role or stations do not allow this", 404: "not found",
             405: "method not allowed", 408: "the body did not arrive in time (QC_BODY_TIMEOUT_S)",
             409: "conflicts with the current state", 413: "over a size or pixel limit",
             415: "unsupported content type or encoding",
             422: "invalid value (the reason names the field)",
             429: "over its fair share of the queue; Retry-After", 500: "internal error",
             503: "busy or not ready; Retry-After", 504: "deadline passed while queued; Retry-After"}
    return {status: {"model": model, "description": words[status]} for status in statuses}


REFUSALS = (400, 401, 403, 404, 408, 409, 413, 415, 422, 429, 503, 504)


# -- reviews -------------------------------------------------------------------------------


class BoxIn(BaseModel):
    """A reviewer's decision on one box: a model detection (by its index in the inspection's
    `detections`), or a missed defect drawn on the image."""

    decision: BoxDecision
    detection: int | None = Field(default=None, ge=0, description="index in detections; null for missed")
    class_name: str = Field(default="", alias="class", max_length=64,
                            description="the right class (wrong_class, missed)")
    xyxy: list[float] | None = Field(default=None, min_length=4, max_length=4,
                                     description="x1, y1, x2, y2 in image pixels (missed only)")

    model_config = {"populate_by_name": True}

    def correction(self) -> BoxCorrection:
        xyxy = (0.0, 0.0, 0.0, 0.0)
        if self.xyxy:
            x1, y1, x2, y2 = self.xyxy  # four: the field's length bounds
            xyxy = (x1, y1, x2, y2)
        return BoxCorrection(decision=self.decision, class_name=self.class_name, detection=self.detection,
                             xyxy=xyxy)


class ReviewIn(BaseModel):
    decision: FrameDecision = Field(description="defect, false_alarm, or retracted (undo of the only decision)")
    boxes: list[BoxIn] = Field(default_factory=list, max_length=500,
                               description="detections not named follow the frame decision; in a "
                               "defect frame, `undecided` leaves one for later (a false alarm decides all)")
    disposition: Disposition | None = Field(default=None, description="default: ng_confirmed for a defect, "
                                            "ok_released for a false alarm")
    note: str = Field(default="", max_length=2000)
    client_id: str | None = Field(default=None, max_length=64, pattern=r"^[A-Za-z0-9_-]+$",
                                  description="the page's id for this decision: a retry with it is stored once")


class BoxOut(BaseModel):
    decision: BoxDecision
    class_name: str = Field(alias="class")
    xyxy: list[float] = Field(description="x1, y1, x2, y2 in the original image's pixels")
    detection: int | None = Field(description="index of the model's detection; null for a missed defect")
    model_class: str | None

    model_config = {"populate_by_name": True}


class ReviewOut(BaseModel):
    id: int
    inspection_id: str
    reviewer: str
    created_at: str
    decision: FrameDecision
    disposition: Disposition | None
    boxes: list[BoxOut]
    note: str
    model_verdict: Verdict
    client_id: str | None

    @classmethod
    def of(cls, review: Review) -> ReviewOut:
        return cls(id=review.id, inspection_id=review.inspection_id, reviewer=review.reviewer,
                   created_at=review.created_at.isoformat(timespec="milliseconds") + "Z",
                   decision=review.decision, disposition=review.disposition,
                   boxes=[BoxOut(**b.to_json()) for b in review.boxes], note=review.note,
                   model_verdict=review.model_verdict, client_id=review.client_id)


class ReviewHistory(BaseModel):
    inspection: Inspection
    latest: ReviewOut | None = Field(description="the current judgement (the newest decision)")
    history: list[ReviewOut] = Field(description="every decision, oldest first")


class InspectionDetail(Inspection):
    """One inspection as `GET /v1/inspections/{id}` shows it: the record and its current
    review (the whole trail is at /v1/inspections/{id}/reviews)."""

    latest_review: ReviewOut | None = Field(default=None, description="the newest review decision, if any")
    reviews: int = Field(default=0, description="decisions in the review trail")


class QueueEntry(BaseModel):
    inspection: Inspection
    review: ReviewOut | None


class QueuePage(BaseModel):
    items: list[QueueEntry]
    remaining: int = Field(description="frames the filter selects in all (unreviewed, by default)")
    next_cursor: str | None


class BulkIn(BaseModel):
    decision: FrameDecision
    expected: int = Field(ge=0, description="the count the reviewer saw; a different count now is 409")
    disposition: Disposition | None = None
    note: str = Field(default="", max_length=2000)


class BulkOut(BaseModel):
    reviewed: int
    inspection_ids: list[str]


# -- the labeling loop ---------------------------------------------------------------------


class LoopRunIn(BaseModel):
    """What to change for this turn; the rest comes from the service's QC_LOOP_* settings."""

    min_new: int | None = Field(default=None, ge=1, description="new labelled images needed (QC_LOOP_MIN_NEW)")
    epochs: int | None = Field(default=None, ge=0, le=1000, description="fine-tune epochs; 0: the recipe's")
    auto_promote: bool | None = Field(default=None, description="promote when the gate passes, else "
                                      "leave the candidate waiting for approval (QC_LOOP_AUTO_PROMOTE)")


class JobOut(BaseModel):
    id: str
    kind: str
    state: JobState
    step: str = Field(description="the step running now, or the last one")
    message: str | None = Field(description="what the step is doing, in words")
    steps: dict[str, Any] = Field(description="finished steps and what each made, in order; a resumed "
                                  "turn skips them")
    alive: bool = Field(description="running, with a heartbeat within the last two minutes")
    params: dict[str, Any]
    result: dict[str, Any] | None = Field(description="per-class metrics before and after, the gate, "
                                          "the frames whose verdict changed, the candidate")
    error: str | None
    created_by: str | None
    created_at: str
    finished_at: str | None

    @classmethod
    def of(cls, job: Job, *, alive: bool) -> JobOut:
        result = dict(job.result) if job.result else None
        if result:
            result.pop("traceback", None)  # the log has it; an API answer does not
        return cls(id=job.id, kind=job.kind, state=job.state, step=job.step, message=job.progress.get("message"),
                   steps=dict(job.progress.get("steps", {})), alive=alive, params=job.params,
                   result=result, error=job.error, created_by=job.created_by,
                   created_at=job.created_at.isoformat(timespec="seconds") + "Z",
                   finished_at=job.finished_at.isoformat(timespec="seconds") + "Z" if job.finished_at else None)
