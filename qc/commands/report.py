"""`qc report`: a shift's, a day's or any window's defect rates as CSV and a printable HTML
report with plots, from the service's database.

Example::

    qc report --shift night                   # the latest night shift that has started
    qc report --shift "2026-03-02 early"
    qc report --day 2026-03-02 --station line1-cam2 --out reports/
    qc report --from 2026-03-01T06:00 --to 2026-03-08T06:00
    qc report --day today --lang ko           # in Korean; after midnight in a night shift, its plant day

Plant time: QC_TIMEZONE and QC_SHIFTS (as the service reads them); every time in the report
is plant time (inspection/analytics/plant_time.py). A plant day runs from its first shift's
start to the next day's, so the night shift after midnight belongs to the day before: that is
the day --day today means then (and the command says so). The same data is served as
JSON at /v1/analytics/summary for an MES.
"""

from __future__ import annotations

from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

from inspection.analytics.plant_time import PlantClock


class Language(StrEnum):
    """The printed report's language (the pages' languages, serving/pages/language.py)."""

    EN = "en"
    KO = "ko"


REPORT_HTML = """<!doctype html>
<html lang="{{ lang }}"><head><meta charset="utf-8"><title>{{ title }}</title>
<style>
body { font-family: system-ui, "Noto Sans", "Noto Sans CJK KR", "Malgun Gothic", sans-serif; margin: 18px;
  color: #1b1f24; }
h1 { font-size: 1.3em; } h2 { font-size: 1.05em; margin-top: 18px; }
table { border-collapse: collapse; margin: 6px 0 12px; font-size: 0.9em; }
th, td { border-bottom: 1px solid #d5dbe1; padding: 3px 10px; text-align: right; } th:first-child { text-align: left; }
td.text { text-align: left; }
.tiles span { display: inline-block; margin-right: 22px; } .tiles b { font-size: 1.3em; }
svg { max-width: 100%; height: auto; } @media print { h2 { break-after: avoid; } svg { break-inside: avoid; } }
</style></head><body>
<h1>{{ title }}</h1>
<p class="window">{{ window }} ({{ data.timezone }})
{%- if data.station %} · {{ _("Station") }} {{ data.station }}{% endif %}</p>
<p class="tiles"><span>{{ _("Inspected") }} <b>{{ data.total.inspected }}</b></span>
<span>{{ _("Defect rate") }} <b>{{ "%.2f"|format(data.total.defect_rate * 100) }}%</b></span>
<span>{{ _("First-pass yield") }} <b>{{ "%.2f"|format(data.total.first_pass_yield * 100) }}%</b></span>
<span>{{ _("Review backlog") }} <b>{{ data.review.backlog }}</b></span></p>
{{ rate_chart|safe }}
{% if pareto_chart %}{{ pareto_chart|safe }}{% endif %}
{% for title, group, rows in tables %}<h2>{{ title }}</h2>
<table><tr><th></th><th>{{ _("Inspected") }}</th><th>FAIL</th><th>REVIEW</th><th>{{ _("Defect rate") }}</th>
<th>{{ _("First-pass yield") }}</th></tr>
{% for r in rows %}<tr><th>
{%- if group == "shift" %}{{ shift_label(r.key) }}{% else %}{{ r.key or _("No product") }}{% endif %}</th>
<td>{{ r.inspected }}</td><td>{{ r.failed }}</td><td>{{ r.review }}</td>
<td>{{ "%.2f"|format(r.defect_rate * 100) }}%</td>
<td>{{ "%.2f"|format(r.first_pass_yield * 100) }}%</td></tr>{% endfor %}
</table>{% endfor %}
<h2>{{ _("Incidents") }}</h2>{% if not incidents %}<p>{{ _("None.") }}</p>{% endif %}
<table>{% for i in incidents %}<tr><th>{{ local(i.since) }}</th>
<td class="text">{{ i.station_id }} · {{ i.rules|join(", ") }}: {{ text(i.headline) }}</td>
<td class="text">{% if i.acknowledged_by %}{{ _("Acknowledged by") }} {{ i.acknowledged_by }}
{%- if i.note %}: {{ i.note }}{% endif %}{% else %}{{ _("open") }}{% endif %}</td></tr>{% endfor %}</table>
<h2>{{ _("Model and rules changes") }}</h2>{% if not data.versions %}<p>{{ _("None.") }}</p>{% endif %}
<table>{% for e in data.versions %}<tr><th>{{ local(e.at) }}</th>
<td class="text">{{ e.station }}: {{ e.label }}</td></tr>{% endfor %}</table>
</body></html>
"""

CSV_COLUMNS = ("group", "key", "inspected", "failed", "review", "defect_rate", "first_pass_yield")


def current_time():
    """Now, aware UTC: one place the command reads the clock (a test stands in a night shift)."""
    from datetime import UTC, datetime

    return datetime.now(UTC)


def plant_today(now, plant):
    """The plant day that `now` belongs to: the day its shift started on. After midnight in a
    night shift that began the evening before, that is the day before the calendar date (the
    plant day runs from the first shift's start to the next day's)."""
    from inspection.analytics.shifts import shift_of

    return shift_of(now, plant).date


def window_of(*, shift: str | None, day: str | None, start: str | None, end: str | None, settings, now=None,
              t=None):
    """(since, until, title) in naive UTC from exactly one of --shift, --day or --from/--to;
    the title in `t`'s language. --day today is the plant day now belongs to (`plant_today`)."""
    from datetime import UTC, date, datetime, timedelta

    from inspection.analytics.shifts import shift_of, shift_span
    from inspection.errors import ConfigError
    from inspection.store.analytics import day_range

    t = t or (lambda text: text)
    given = [shift is not None, day is not None, start is not None or end is not None]
    if sum(given) != 1:
        raise ConfigError("give exactly one of --shift, --day or --from/--to")
    plant = settings.plant_shifts
    now = now or datetime.now(UTC)

    def naive(value: datetime) -> datetime:
        return value.astimezone(UTC).replace(tzinfo=None)

    if shift is not None:
        parts = shift.strip().split()
        if len(parts) == 2:
            span = shift_span(date.fromisoformat(parts[0]), parts[1], plant)
        else:
            current = shift_of(now, plant)
            span = shift_span(current.date, parts[0], plant)
            if span.start > now:  # not started yet today: the one of the day before
                span = shift_span(current.date - timedelta(days=1), parts[0], plant)
        return naive(span.start), naive(span.end), t("Shift {name} of {day}").format(name=t(span.name),
                                                                                        day=span.date)
    if day is not None:
        local = plant_today(now, plant)
        chosen = {"today": local, "yesterday": local - timedelta(days=1)}.get(day) or date.fromisoformat(day)
        since, until = day_range(chosen, plant)
        return since, until, t("Day {day}").format(day=chosen)
    if not (start and end):
        raise ConfigError("--from and --to go together")

    def parse(text: str) -> datetime:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
        return naive(value if value.tzinfo else value.replace(tzinfo=plant.zone))

    since, until = parse(start), parse(end)
    if until <= since:
        raise ConfigError("--to must be after --from")
    clock = PlantClock(plant.timezone)
    return since, until, t("{start} to {end}").format(start=clock.format(since), end=clock.format(until))


def day_note(day: str | None, settings, now, t) -> str:
    """A line saying which plant day --day today (or yesterday) chose, when it is not the
    calendar date (after midnight in a night shift); "" otherwise."""
    from datetime import timedelta

    from inspection.analytics.shifts import shift_of

    plant = settings.plant_shifts
    clock = PlantClock(plant.timezone)
    if day not in ("today", "yesterday") or plant_today(now, plant) == clock.day(now):
        return ""
    current = shift_of(now, plant)
    chosen = current.date - timedelta(days=1 if day == "yesterday" else 0)
    return t("It is {now}, in the {shift} shift of {day}: --day {asked} is plant day {chosen}.").format(
        now=clock.format(now), shift=t(current.name), day=current.date, asked=day, chosen=chosen)


def write_report(db, settings, since, until, title: str, out: Path, *, station: str | None = None,
                 lang: str = "en") -> tuple[Path, Path]:
    """report.csv and report.html for [since, until) in `out`; the HTML in `lang`, its times in
    plant time (QC_TIMEZONE)."""
    import csv
    from datetime import timedelta

    from jinja2 import Environment, select_autoescape

    from inspection.analytics.charts import Series, line_chart, pareto_chart
    from inspection.analytics.shifts import shift_label
    from inspection.store.analytics import AnalyticsStore
    from serving.pages.language import translator

    t = translator(lang)
    clock = PlantClock(settings.timezone)
    analytics = AnalyticsStore(db)
    analytics.refresh()
    data = analytics.summary(since, until, shifts=settings.plant_shifts, station=station)
    out.mkdir(parents=True, exist_ok=True)
    csv_path, html_path = out / "report.csv", out / "report.html"
    groups = ("station", "product", "class", "day", "shift")
    tables = [(t(f"By {group}"), group, data[f"by_{group}"]) for group in groups]
    with csv_path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(CSV_COLUMNS)
        writer.writerow(["total", *(data["total"][c] for c in CSV_COLUMNS[1:])])
        for group, rows in zip(groups, (table[2] for table in tables), strict=True):
            for row in rows:
                writer.writerow([group, *(row[c] for c in CSV_COLUMNS[1:])])
    step = timedelta(hours=1) if until - since <= timedelta(days=2) else timedelta(days=1)
    points = analytics.series(since, until, station=station, step=step)

    def plant(value):  # the charts' axes in plant time, as the header says
        return clock.local(value).replace(tzinfo=None)

    markers = [(plant(e["at"]), f"{e['station']}: {e['label']}")
               for e in analytics.versions(since, until, station=station)]
    rate_chart = line_chart([plant(p["start"]) for p in points],
                            [Series(t("Defect rate"), [p["defect_rate"] for p in points])],
                            markers=markers, title=t("Defect rate"))
    pareto = data["pareto"]
    pareto_svg = pareto_chart([p["class"] for p in pareto], [p["failed_parts"] for p in pareto],
                              title=t("Pareto of defect classes")) if pareto else ""
    template = Environment(autoescape=select_autoescape(default=True)).from_string(REPORT_HTML)
    html_path.write_text(template.render(
        _=t, lang=lang, title=t("QC report: {title}").format(title=title),
        window=f"{clock.format(since, lang=lang)} – {clock.format(until, lang=lang)}", data=data, tables=tables,
        rate_chart=rate_chart, pareto_chart=pareto_svg, local=lambda v: clock.format(v, lang=lang),
        incidents=analytics.incidents(since=since, until=until, station=station, limit=500),
        text=lambda alarm: alarm.text(t, clock, lang=lang), shift_label=lambda key: shift_label(key, t)),
        encoding="utf-8")
    return csv_path, html_path


def report(
    shift: Annotated[str | None, typer.Option("--shift", help="A shift: NAME (the latest that has started) or "
                                                                "'YYYY-MM-DD NAME'.")] = None,
    day: Annotated[str | None, typer.Option("--day", help="A plant day: YYYY-MM-DD, today or yesterday (the "
                                                            "plant day the current shift belongs to).")] = None,
    start: Annotated[str | None, typer.Option("--from", help="Start (ISO; plant time without an offset).")] = None,
    end: Annotated[str | None, typer.Option("--to", help="End (ISO; plant time without an offset).")] = None,
    station: Annotated[str | None, typer.Option(help="Only this station.")] = None,
    out: Annotated[Path, typer.Option(help="Folder for report.csv and report.html.")] = Path("."),
    lang: Annotated[Language, typer.Option("--lang", help="The printed report's language.")] = Language.EN,
) -> None:
    """Defect rates per station, product, class, day and shift, Pareto, yield, incidents: CSV and printable HTML."""
    from inspection.store.database import Database
    from serving.pages.language import translator
    from serving.settings import ServeSettings

    settings = ServeSettings()
    t = translator(lang.value)
    now = current_time()
    since, until, title = window_of(shift=shift, day=day, start=start, end=end, settings=settings, now=now, t=t)
    note = day_note(day, settings, now, t)
    if note:
        typer.echo(note)
    db = Database.from_settings(settings)
    try:
        csv_path, html_path = write_report(db, settings, since, until, title, out, station=station, lang=lang.value)
    finally:
        db.dispose()
    typer.echo(f"{title}: wrote {csv_path} and {html_path}")
