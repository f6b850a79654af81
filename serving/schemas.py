"""Request and response bodies, as they appear in the OpenAPI schema (/docs)."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from inspection.roles import Role
from inspection.rules import StationRules, Verdict
from inspection.store.jobs import Job, JobState
from inspection.store.keys import ApiKey
from inspection.store.records import STATION_ID, InspectionRecord, Station
from inspection.store.reviews import BoxCorrection, BoxDecision, Disposition, FrameDecision, Review


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


class Inspection(BaseModel):
    id: str
    station: str
    part_id: str | None
    verdict: Verdict
    rule: str = Field(description="the rule that decided, in words")
    detections: list[Detection]
    model: ModelRef
    rules_version: int
    width: int
    height: int
    image_stored: bool
    created_at: str
    timings: dict[str, float] = Field(
        description="decode_ms, queue_ms, inference_ms, postprocess_ms, store_ms, total_ms (ms); batch_size"
    )

    @classmethod
    def of(cls, record: InspectionRecord) -> Inspection:
        return cls(
            id=record.id, station=record.station_id, part_id=record.part_id, verdict=record.verdict,
            rule=record.rule, detections=record.detections,
            model=ModelRef(name=record.model_name, version=record.model_version),
            rules_version=record.rules_version, width=record.width, height=record.height,
            image_stored=record.image_sha256 is not None,
            created_at=record.created_at.isoformat(timespec="milliseconds") + "Z",
            timings={k: round(float(v), 3) for k, v in record.timings.items()},
        )


class InspectionPage(BaseModel):
    items: list[Inspection]
    next_cursor: str | None = Field(description="pass as ?cursor= for the next page; null at the end")


class StationIn(BaseModel):
    id: str = Field(pattern=f"^{STATION_ID.pattern}$")
    description: str = ""
    rules: StationRules = Field(default_factory=StationRules)


class StationOut(BaseModel):
    id: str
    description: str
    rules_version: int
    rules: StationRules
    created_at: str

    @classmethod
    def of(cls, station: Station) -> StationOut:
        return cls(id=station.id, description=station.description, rules_version=station.rules_version,
                   rules=station.rules, created_at=station.created_at.isoformat() + "Z")


class KeyIn(BaseModel):
    role: Role
    stations: list[str] = Field(default_factory=list)
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
        return BoxCorrection(decision=self.decision, class_name=self.class_name, detection=self.detection,
                             xyxy=tuple(self.xyxy) if self.xyxy else (0.0, 0.0, 0.0, 0.0))


class ReviewIn(BaseModel):
    decision: FrameDecision = Field(description="defect, false_alarm, or retracted (undo of the only decision)")
    boxes: list[BoxIn] = Field(default_factory=list, max_length=500,
                               description="detections not named follow the frame decision")
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
