"""The plant dashboard: rates, Pareto, control charts and alarms, for people signed in.

Example::

    open http://127.0.0.1:8000/dashboard        # signed in as a reviewer or above

Reviewers and above see it and acknowledge alarms; engineers also freeze limits (plain forms
with the session's CSRF token). Server-rendered with SVG charts: no script, nothing fetched
from elsewhere (the review pages' Content Security Policy). The same data as JSON is
serving/routers/analytics.py.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, Form, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse

from inspection.analytics.charts import Series, line_chart, pareto_chart
from inspection.analytics.spc import ChartKind, Side, shewhart_chart
from inspection.roles import Role
from inspection.store.analytics import ALL_CLASSES, AnalyticsStore, FrozenLimits
from inspection.store.records import utcnow
from serving.deps import AlarmId, AnalyticsDep, SettingsDep, StoreDep, UsersDep
from serving.pages.forbidden import forbidden_page
from serving.pages.language import LANGUAGES, translator
from serving.pages.render import language, templates
from serving.sessions import LANGUAGE_COOKIE, csrf_matches, session_of
from serving.settings import ServeSettings

router = APIRouter(tags=["pages"], include_in_schema=False)

# The review pages' policy (serving/pages/render.py), stricter still: this page runs no script.
HEADERS = {
    "Content-Security-Policy": "default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'none'; "
                               "form-action 'self'; frame-ancestors 'none'; base-uri 'none'; object-src 'none'",
    "X-Content-Type-Options": "nosniff", "Referrer-Policy": "no-referrer", "X-Frame-Options": "DENY",
    "Cache-Control": "no-store",
}
RANGES = {"8h": timedelta(hours=8), "24h": timedelta(hours=24), "7d": timedelta(days=7), "30d": timedelta(days=30)}


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
    lang = language(request)
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
    html = templates.get_template("dashboard.html").render(
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
        return forbidden_page(request, session, "Freezing control limits is for engineers and admins.",
                              needs=Role.ENGINEER)
    store.station(station)
    end = utcnow()
    analytics.freeze(station, end - timedelta(hours=hours), end, frozen_by=session.user.name,
                     subgroup_size=subgroup_size)
    return RedirectResponse(f"/dashboard?station={quote(station)}", status_code=303)

