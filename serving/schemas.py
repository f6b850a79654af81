"""Request and response bodies, as they appear in the OpenAPI schema (/docs)."""

from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, Field

from inspection.rules import StationRules
from inspection.store.records import STATION_ID


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
    verdict: Literal["PASS", "FAIL", "REVIEW"]
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


class KeyIn(BaseModel):
    role: Literal["station", "reviewer", "engineer", "admin"]
    stations: list[str] = Field(default_factory=list)
    name: str = Field(default="", max_length=128)


class KeyOut(BaseModel):
    id: str
    role: str
    stations: list[str]
    name: str
    created_at: str
    revoked: bool


class PromoteIn(BaseModel):
    version: str = Field(pattern=r"^v\d+$")


class ShadowIn(BaseModel):
    ref: str | None = Field(default=None, pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]{0,63}(@[A-Za-z0-9]+)?$",
                            description="registry ref name@version; null switches shadow off")
