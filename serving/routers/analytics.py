"""Plant analytics over HTTP: JSON for an MES and tools, and the dashboard page for people.

Example::

    curl -H "Authorization: Bearer $KEY" "http://127.0.0.1:8000/v1/analytics/summary?since=2026-03-02T06:00"
    curl -X POST -H "Authorization: Bearer $ENGINEER_KEY" http://127.0.0.1:8000/v1/analytics/limits \\
         -H "Content-Type: application/json" -d '{"station": "line1-cam2", "since": "...", "until": "..."}'
    open http://127.0.0.1:8000/dashboard        # signed in as a reviewer or above

Who may do what: reading and acknowledging alarms needs a reviewer (a signed-in person or a
staff key, as the review routes; never a station key); freezing limits and running the
evaluator needs an engineer. Times given without an offset are plant time (QC_TIMEZONE).
The page is server-rendered with SVG charts and plain forms: no script, nothing fetched from
elsewhere (the review pages' Content Security Policy).
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, Form, HTTPException, Query, Request
from fastapi import Path as PathParam
from fastapi.responses import HTMLResponse, RedirectResponse
from jinja2 import Environment, FileSystemLoader, select_autoescape
from pydantic import BaseModel, Field

from inspection.analytics.charts import Series, line_chart, pareto_chart
from inspection.analytics.spc import ChartKind, Side, shewhart_chart
from inspection.roles import Role
from inspection.store.analytics import ALL_CLASSES, AnalyticsStore, FrozenLimits, Grouping
from inspection.store.records import utcnow
from serving.deps import AlarmsDep, AnalyticsDep, Person, SettingsDep, StoreDep, UsersDep
from serving.pages.language import LANGUAGES, choose, translator
from serving.sessions import LANGUAGE_COOKIE, csrf_matches, session_of
from serving.settings import ServeSettings

router = APIRouter(tags=["analytics"])

PAGES = Path(__file__).resolve().parents[1] / "pages"
_templates = Environment(loader=FileSystemLoader(PAGES / "templates"), autoescape=select_autoescape(["html"]))
# The review pages' policy: nothing but this origin (serving/routers/pages.py says why).
HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'none'; "
                               "form-action 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'",
    "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer", "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}
RANGES = {"8h": timedelta(hours=8), "24h": timedelta(hours=24), "7d": timedelta(days=7), "30d": timedelta(days=30)}


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


# An alarm's id is a database integer: one beyond 64 bits is a 422, not an overflow in the driver.
AlarmId = Annotated[int, PathParam(ge=1, le=2**63 - 1, description="the alarm's id")]

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


# -- the dashboard page ----------------------------------------------------------------------


def _language(request: Request) -> str:
    asked = request.query_params.get("lang")
    if asked in LANGUAGES:
        return asked
    return choose(cookie=request.cookies.get(LANGUAGE_COOKIE), accept_language=request.headers.get("accept-language"))


def _local(value: datetime | None, settings: ServeSettings) -> str:
    if value is None:
        return ""
    return value.replace(tzinfo=UTC).astimezone(settings.zone).strftime("%Y-%m-%d %H:%M")


@router.get("/dashboard", response_class=HTMLResponse, include_in_schema=False)
def dashboard(request: Request, users: UsersDep, settings: SettingsDep, analytics: AnalyticsDep,
              range: str = "24h", station: str | None = None):
    session = session_of(request, users, settings)
    if session is None:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse(f"/login?next={quote(target)}", status_code=303)
    lang = _language(request)
    t = translator(lang)
    span = RANGES.get(range, RANGES["24h"])
    end = utcnow() + timedelta(minutes=15)
    start = end - span
    analytics.refresh()
    station = station or None
    data = analytics.summary(start, end, shifts=settings.plant_shifts, station=station)
    step = timedelta(hours=1) if span <= timedelta(days=2) else timedelta(days=1)
    points = analytics.series(start, end, station=station, step=step)
    def plant(value: datetime) -> datetime:  # charts are labelled in plant time, as the page says
        return value.replace(tzinfo=UTC).astimezone(settings.zone).replace(tzinfo=None)

    times = [plant(p["start"]) for p in points]
    markers = [(plant(e["at"]), f"{e['station']}: {e['label']}")
               for e in analytics.versions(start, end, station=station)]
    rate_chart = line_chart(times, [Series(t("Defect rate"), [p["defect_rate"] for p in points]),
                                    Series(t("Review"), [p["review"] / p["inspected"] if p["inspected"] else None
                                                         for p in points], dashed=True)],
                            markers=markers, title=t("Defect rate") + (f" · {station}" if station else ""))
    pareto = data["pareto"]
    pareto_svg = pareto_chart([p["class"] for p in pareto], [p["failed_parts"] for p in pareto],
                              title=t("Pareto of defect classes")) if pareto else ""
    control = [_control_chart(analytics, f, t, plant) for f in analytics.limits(station)
               if f.class_name == ALL_CLASSES]
    stations = sorted({r["key"] for r in analytics.summary(start, end, shifts=settings.plant_shifts)["by_station"]}
                      | ({station} if station else set()))
    html = _templates.get_template("dashboard.html").render(
        _=t, lang=lang, languages=LANGUAGES, path=request.url.path, user=session.user, csrf=session.csrf,
        data=data, range=range if range in RANGES else "24h", ranges=list(RANGES), station=station or "",
        stations=stations, rate_chart=rate_chart, pareto_chart=pareto_svg, control_charts=control,
        open_alarms=list(analytics.alarms(unacknowledged=True, limit=50)),
        recent_alarms=[a for a in analytics.alarms(limit=20) if a.acknowledged_at is not None],
        local=lambda v: _local(v, settings), timezone=settings.timezone,
        engineer=session.user.role.covers(Role.ENGINEER), limits=analytics.limits(station))
    response = HTMLResponse(html, headers=HEADERS)
    if request.query_params.get("lang") in LANGUAGES:
        response.set_cookie(LANGUAGE_COOKIE, lang, max_age=365 * 86400, path="/", samesite="strict")
    return response


def _control_chart(analytics: AnalyticsStore, frozen: FrozenLimits, t, plant) -> str:
    """The station's p-chart (fraction defective) or u-chart (defects per part) since its
    baseline: the last 60 subgroups, the frozen centre and the 3-sigma limit, subgroups where
    a zone rule fired ringed."""
    groups = analytics.subgroups(frozen.station_id, size=frozen.subgroup_size, after=frozen.baseline_to, last=60)
    if len(groups) == 0:
        return ""
    sizes = [groups.size] * len(groups)
    is_p = frozen.limits.kind is ChartKind.P
    chart = shewhart_chart(frozen.limits, groups.failed if is_p else groups.defects, sizes)
    return line_chart(
        [plant(when) for when in groups.times],
        [Series(t("Fraction defective") if is_p else t("Defects per part"), list(chart.values)),
         Series(t("Upper control limit"), list(chart.upper), dashed=True, colour="#c62828"),
         Series(t("Centre"), [frozen.limits.centre] * len(groups), dashed=True, colour="#2e7d32")],
        highlight=sorted({a.index for a in chart.alarms if a.side is Side.ABOVE}), percent=is_p,
        title=f"{t('p-chart') if is_p else t('u-chart')} · {frozen.station_id} (n = {frozen.subgroup_size})")


def _form_person(request: Request, users, settings: ServeSettings, csrf: str):
    session = session_of(request, users, settings)
    if session is None:
        raise HTTPException(401, "sign in at /login")
    if not csrf_matches(csrf, session.csrf):
        raise HTTPException(403, "wrong CSRF token; reload the page and try again")
    return session


@router.post("/dashboard/alarms/{alarm_id}/acknowledge", include_in_schema=False)
def acknowledge_form(alarm_id: AlarmId, request: Request, users: UsersDep, settings: SettingsDep,
                     analytics: AnalyticsDep, csrf: Annotated[str, Form(max_length=128)],
                     note: Annotated[str, Form(max_length=2000)] = ""):
    session = _form_person(request, users, settings, csrf)
    analytics.acknowledge(alarm_id, by=session.user.name, note=note)
    return RedirectResponse("/dashboard", status_code=303)


@router.post("/dashboard/limits", include_in_schema=False)
def freeze_form(request: Request, users: UsersDep, settings: SettingsDep, analytics: AnalyticsDep,
                store: StoreDep, csrf: Annotated[str, Form(max_length=128)],
                station: Annotated[str, Form(max_length=64)], hours: Annotated[float, Form(gt=0, le=24 * 90)],
                subgroup_size: Annotated[int, Form(ge=1, le=100000)] = 50):
    session = _form_person(request, users, settings, csrf)
    if not session.user.role.covers(Role.ENGINEER):
        raise HTTPException(403, "freezing limits needs an engineer or admin")
    store.station(station)
    end = utcnow()
    analytics.freeze(station, end - timedelta(hours=hours), end, frozen_by=session.user.name,
                     subgroup_size=subgroup_size)
    return RedirectResponse(f"/dashboard?station={quote(station)}", status_code=303)

