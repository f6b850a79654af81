"""Request and response bodies, as they appear in the OpenAPI schema (/docs).

Every field a client sends is bounded (a 1 MB description, a key scoped to 10,000 stations
were accepted before, issue 9): over a bound is a 422 naming the field and the limit.
"""

from __future__ import annotations

import re
from datetime import datetime
from typing import Annotated

from pydantic import BaseModel, BeforeValidator, Field

from inspection.roles import Role
from inspection.rules import StationRules, Verdict
from inspection.store.keys import ApiKey
from inspection.store.records import STATION_ID, InspectionRecord, Station


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


MAX_DESCRIPTION = 1000
MAX_KEY_STATIONS = 256
StationId = Annotated[str, Field(pattern=f"^{STATION_ID.pattern}$")]


class StationIn(BaseModel):
    id: StationId
    description: str = Field(default="", max_length=MAX_DESCRIPTION)
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
