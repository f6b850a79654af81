"""The plant dashboard: rates, Pareto, control charts and incidents, for people signed in.

Example::

    open http://127.0.0.1:8000/dashboard        # signed in as a reviewer or above

Reviewers and above see it and acknowledge incidents (the alarms that fired together at a
station, inspection/store/incidents.py), once each; engineers also freeze limits (plain forms
with the session's CSRF token). The figures and charts come first, the incident list beside
them, so both are above the fold of a 1366x768 monitor. Every time is plant time
(inspection/analytics/plant_time.py), every alarm text in the page's language.
Server-rendered with SVG charts: no script, nothing fetched
from elsewhere (the review pages' Content Security Policy). The same data as JSON is
serving/routers/analytics.py.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Annotated
from urllib.parse import quote

from fastapi import APIRouter, Form, HTTPException, Request
from fastapi.responses import HTMLResponse, RedirectResponse

from inspection.analytics.charts import Series, line_chart, pareto_chart
from inspection.analytics.plant_time import PlantClock
from inspection.analytics.shifts import shift_label
from inspection.analytics.spc import ChartKind, Side, shewhart_chart
from inspection.roles import Role
from inspection.store.analytics import ALL_CLASSES, AlarmRecord, AnalyticsStore, FrozenLimits
from inspection.store.records import utcnow
from serving.deps import AlarmId, AnalyticsDep, IncidentId, SettingsDep, StoreDep, UsersDep
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
# Drawn at about the size shown (two charts a row beside the incident list at 1366 px), so
# their text reads at its own size instead of scaled down.
CHART_WIDTH, CHART_HEIGHT = 480, 190
RANGES = {"8h": timedelta(hours=8), "24h": timedelta(hours=24), "7d": timedelta(days=7), "30d": timedelta(days=30)}




def rule_words(t) -> dict[str, str]:
    """What each rule means, in the page's language (a rule chip's title and the legend)."""
    words = {
        "EWMA": t("EWMA: a small, lasting rise"),
        "CUSUM": t("CUSUM: defective parts piling up beyond the baseline"),
        "WE1": t("WE1: one subgroup beyond 3σ"),
        "WE2": t("WE2: two of three subgroups beyond 2σ"),
        "WE3": t("WE3: four of five subgroups beyond 1σ"),
        "WE4": t("WE4: eight subgroups in a row above the centre"),
        "TREND": t("TREND: six subgroups rising in a row"),
    }
    words |= {f"u:{rule}": t("u-chart") + ", " + text for rule, text in list(words.items())
              if not rule.startswith(("EWMA", "CUSUM"))}
    words["drift"] = t("drift: the images moved against the baseline's")
    return words


@router.get("/dashboard", response_class=HTMLResponse, include_in_schema=False)
def dashboard(request: Request, users: UsersDep, settings: SettingsDep, analytics: AnalyticsDep,
              range: str = "24h", station: str | None = None):
    session = session_of(request, users, settings)
    if session is None:
        target = request.url.path + (f"?{request.url.query}" if request.url.query else "")
        return RedirectResponse(f"/login?next={quote(target)}", status_code=303)
    lang = language(request)
    t = translator(lang)
    clock = PlantClock(settings.timezone)
    span = RANGES.get(range, RANGES["24h"])
    end = utcnow() + timedelta(minutes=15)
    start = end - span
    analytics.refresh()
    station = station or None
    data = analytics.summary(start, end, shifts=settings.plant_shifts, station=station)
    step = timedelta(hours=1) if span <= timedelta(days=2) else timedelta(days=1)
    points = analytics.series(start, end, station=station, step=step)
    def plant(value: datetime) -> datetime:  # charts are labelled in plant time, as the page says
        return clock.local(value).replace(tzinfo=None)

    times = [plant(p["start"]) for p in points]
    markers = [(plant(e["at"]), f"{e['station']}: {e['label']}")
               for e in analytics.versions(start, end, station=station)]
    rate_chart = line_chart(times, [Series(t("Defect rate"), [p["defect_rate"] for p in points]),
                                    Series(t("Review"), [p["review"] / p["inspected"] if p["inspected"] else None
                                                         for p in points], dashed=True)],
                            markers=markers, title=t("Defect rate") + (f" · {station}" if station else ""),
                            width=CHART_WIDTH, height=CHART_HEIGHT)
    pareto = data["pareto"]
    pareto_svg = pareto_chart([p["class"] for p in pareto], [p["failed_parts"] for p in pareto],
                              title=t("Pareto of defect classes"), width=CHART_WIDTH,
                              height=CHART_HEIGHT) if pareto else ""
    control = [_control_chart(analytics, f, t, plant) for f in analytics.limits(station)
               if f.class_name == ALL_CLASSES]
    stations = sorted({r["key"] for r in analytics.summary(start, end, shifts=settings.plant_shifts)["by_station"]}
                      | ({station} if station else set()))
    # Open: unacknowledged, or still holding; the acknowledged ones that ended go below them.
    shown = analytics.incidents(limit=60)
    open_incidents = [i for i in shown if i.acknowledged_at is None or i.open]
    done_incidents = [i for i in shown if i.acknowledged_at is not None and not i.open][:20]

    def text(alarm: AlarmRecord) -> str:
        return alarm.text(t, clock, lang=lang)

    html = templates.get_template("dashboard.html").render(
        _=t, lang=lang, languages=LANGUAGES, path=request.url.path, user=session.user, csrf=session.csrf,
        data=data, range=range if range in RANGES else "24h", ranges=list(RANGES), station=station or "",
        stations=stations, rate_chart=rate_chart, pareto_chart=pareto_svg, control_charts=control,
        incidents=open_incidents, unacknowledged=sum(i.acknowledged_at is None for i in open_incidents),
        done_incidents=done_incidents, text=text, rule_words=rule_words(t),
        shift_label=lambda key: shift_label(key, t),
        local=lambda v: clock.format(v, lang=lang), timezone=settings.timezone,
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
        width=CHART_WIDTH, height=CHART_HEIGHT,
        title=f"{t('p-chart') if is_p else t('u-chart')} · {frozen.station_id} (n = {frozen.subgroup_size})")


def _form_person(request: Request, users, settings: ServeSettings, csrf: str):
    session = session_of(request, users, settings)
    if session is None:
        raise HTTPException(401, "sign in at /login")
    if not csrf_matches(csrf, session.csrf):
        raise HTTPException(403, "wrong CSRF token; reload the page and try again")
    return session


@router.post("/dashboard/incidents/{incident_id}/acknowledge", include_in_schema=False)
def acknowledge_incident_form(incident_id: IncidentId, request: Request, users: UsersDep, settings: SettingsDep,
                              analytics: AnalyticsDep, csrf: Annotated[str, Form(max_length=128)],
                              note: Annotated[str, Form(max_length=2000)] = ""):
    """One acknowledgement for the incident and every alarm in it."""
    session = _form_person(request, users, settings, csrf)
    analytics.acknowledge_incident(incident_id, by=session.user.name, note=note)
    return RedirectResponse("/dashboard", status_code=303)


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

