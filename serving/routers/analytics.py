"""Plant analytics over HTTP: JSON for an MES and tools (the dashboard page for people is
serving/routers/pages/dashboard.py).

Example::

    curl -H "Authorization: Bearer $KEY" "http://127.0.0.1:8000/v1/analytics/summary?since=2026-03-02T06:00"
    curl -X POST -H "Authorization: Bearer $ENGINEER_KEY" http://127.0.0.1:8000/v1/analytics/limits \\
         -H "Content-Type: application/json" -d '{"station": "line1-cam2", "since": "...", "until": "..."}'
    open http://127.0.0.1:8000/dashboard        # signed in as a reviewer or above

Incidents are the alarms that fired together at a station (inspection/store/incidents.py):
acknowledging one acknowledges all its alarms, once.

    curl -H "Authorization: Bearer $KEY" "http://127.0.0.1:8000/v1/analytics/incidents?unacknowledged=true"
    curl -X POST -H "Authorization: Bearer $KEY" -H "Content-Type: application/json" \\
         -d '{"note": "nozzle 2 cleaned"}' http://127.0.0.1:8000/v1/analytics/incidents/7/acknowledge

Who may do what: reading and acknowledging alarms and incidents needs a reviewer (a signed-in
person or a staff key, as the review routes; never a station key); freezing limits and running the
evaluator needs an engineer. Times given without an offset are plant time (QC_TIMEZONE).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query
from pydantic import BaseModel, Field

from inspection.roles import Role
from inspection.store.analytics import Grouping
from inspection.store.records import utcnow
from serving.deps import AlarmId, AlarmsDep, AnalyticsDep, IncidentId, Person, SettingsDep, StoreDep
from serving.settings import ServeSettings

router = APIRouter(tags=["analytics"])


def _when(value: str | None, settings: ServeSettings, default: datetime) -> datetime:
    """ISO time to naive UTC; no offset means plant time."""
    if not value:
        return default
    try:
        parsed = datetime.fromisoformat(value.replace("Z", "+00:00"))
    except ValueError:
        raise HTTPException(422, f"{value!r} is not an ISO 8601 time (e.g. 2026-03-02T06:00 or "
                                 "2026-03-02T06:00:00Z)") from None
    if parsed.tzinfo is None:
        parsed = parsed.replace(tzinfo=settings.zone)
    return parsed.astimezone(UTC).replace(tzinfo=None)


def _window(since: str | None, until: str | None, settings: ServeSettings) -> tuple[datetime, datetime]:
    end = _when(until, settings, utcnow() + timedelta(minutes=15))
    start = _when(since, settings, end - timedelta(hours=24))
    if end <= start:
        raise HTTPException(422, "until must be after since")
    return start, end


def _engineer(person) -> None:
    if not person.role.covers(Role.ENGINEER):
        raise HTTPException(403, f"a {person.role.value} cannot do this; it needs engineer or admin")


# -- JSON ------------------------------------------------------------------------------------



@router.get("/v1/analytics/summary")
def summary(person: Person, analytics: AnalyticsDep, settings: SettingsDep, since: str | None = None,
            until: str | None = None, station: str | None = None) -> dict[str, Any]:
    """Defect rates by station, product, class, plant day and shift, the Pareto of classes, first-pass
    yield, review backlog and agreement, the version timeline and the alarms of the window."""
    start, end = _window(since, until, settings)
    analytics.refresh()
    return analytics.summary(start, end, shifts=settings.plant_shifts, station=station)


@router.get("/v1/analytics/rates")
def rates(person: Person, analytics: AnalyticsDep, settings: SettingsDep, by: Grouping = Grouping.STATION,
          since: str | None = None, until: str | None = None, station: str | None = None) -> dict[str, Any]:
    start, end = _window(since, until, settings)
    analytics.refresh()
    rows = analytics.rates(start, end, by=by, shifts=settings.plant_shifts, station=station)
    return {"by": by.value, "rows": [r.to_json() for r in rows]}


@router.get("/v1/analytics/alarms")
def list_alarms(person: Person, analytics: AnalyticsDep, unacknowledged: bool = False,
                station: str | None = None, limit: Annotated[int, Query(ge=1, le=1000)] = 200) -> dict[str, Any]:
    found = analytics.alarms(unacknowledged=unacknowledged, station=station, limit=limit)
    return {"alarms": [a.to_json() for a in found]}


class Acknowledgement(BaseModel):
    note: str = Field(default="", max_length=2000)


@router.post("/v1/analytics/alarms/{alarm_id}/acknowledge")
def acknowledge(alarm_id: AlarmId, body: Acknowledgement, person: Person, analytics: AnalyticsDep) -> dict[str, Any]:
    return analytics.acknowledge(alarm_id, by=person.name, note=body.note).to_json()


@router.get("/v1/analytics/incidents")
def list_incidents(person: Person, analytics: AnalyticsDep, unacknowledged: bool = False,
                   still_open: Annotated[bool, Query(alias="open")] = False, station: str | None = None,
                   limit: Annotated[int, Query(ge=1, le=500)] = 50) -> dict[str, Any]:
    """Incidents, newest first, each with its rules, classes and alarms; `open`: only those
    whose alarms still hold."""
    found = analytics.incidents(unacknowledged=unacknowledged, open_only=still_open, station=station, limit=limit)
    return {"incidents": [i.to_json() for i in found]}


@router.post("/v1/analytics/incidents/{incident_id}/acknowledge")
def acknowledge_incident(incident_id: IncidentId, body: Acknowledgement, person: Person,
                         analytics: AnalyticsDep) -> dict[str, Any]:
    """Acknowledge the incident and every alarm in it."""
    return analytics.acknowledge_incident(incident_id, by=person.name, note=body.note).to_json()


class Freeze(BaseModel):
    station: str
    since: str
    until: str
    subgroup_size: int = Field(default=50, ge=1, le=100000)


@router.get("/v1/analytics/limits")
def list_limits(person: Person, analytics: AnalyticsDep, station: str | None = None) -> dict[str, Any]:
    return {"limits": [f.to_json() for f in analytics.limits(station)]}


@router.post("/v1/analytics/limits", status_code=201)
def freeze(body: Freeze, person: Person, analytics: AnalyticsDep, settings: SettingsDep,
           store: StoreDep) -> dict[str, Any]:
    """Freeze SPC limits (p-chart of the station and of each class that failed parts, u-chart
    of the station's defects per part) from the baseline window; the window is also the drift
    reference."""
    _engineer(person)
    store.station(body.station)  # 404 naming the fix
    start, end = _when(body.since, settings, utcnow()), _when(body.until, settings, utcnow())
    frozen = analytics.freeze(body.station, start, end, frozen_by=person.name, subgroup_size=body.subgroup_size)
    return {"limits": [f.to_json() for f in frozen]}


@router.post("/v1/analytics/evaluate")
def evaluate(person: Person, alarms: AlarmsDep) -> dict[str, Any]:
    """Run the alarm evaluator now (it also runs every QC_ALARM_INTERVAL_S)."""
    _engineer(person)
    return {"raised": [a.to_json() for a in alarms.evaluate()]}
