"""`qc report`: a shift's, a day's or any window's defect rates as CSV and a printable HTML
report with plots, from the service's database.

Example::

    qc report --shift night                   # the latest night shift that has started
    qc report --shift "2026-03-02 early"
    qc report --day 2026-03-02 --station line1-cam2 --out reports/
    qc report --from 2026-03-01T06:00 --to 2026-03-08T06:00

Plant time: QC_TIMEZONE and QC_SHIFTS (as the service reads them). The same data is served as
JSON at /v1/analytics/summary for an MES.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

REPORT_HTML = """<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>{{ title }}</title>
<style>
body { font-family: system-ui, "Noto Sans", "Noto Sans CJK KR", sans-serif; margin: 18px; color: #1b1f24; }
h1 { font-size: 1.3em; } h2 { font-size: 1.05em; margin-top: 18px; }
table { border-collapse: collapse; margin: 6px 0 12px; font-size: 0.9em; }
th, td { border-bottom: 1px solid #d5dbe1; padding: 3px 10px; text-align: right; } th:first-child { text-align: left; }
.tiles span { display: inline-block; margin-right: 22px; } .tiles b { font-size: 1.3em; }
svg { max-width: 100%; height: auto; } @media print { h2 { break-after: avoid; } svg { break-inside: avoid; } }
</style></head><body>
<h1>{{ title }}</h1>
<p>{{ window }} ({{ data.timezone }}){% if data.station %} · station {{ data.station }}{% endif %}</p>
<p class="tiles"><span>Inspected <b>{{ data.total.inspected }}</b></span>
<span>Defect rate <b>{{ "%.2f"|format(data.total.defect_rate * 100) }}%</b></span>
<span>First-pass yield <b>{{ "%.2f"|format(data.total.first_pass_yield * 100) }}%</b></span>
<span>Review backlog <b>{{ data.review.backlog }}</b></span></p>
{{ rate_chart|safe }}
{% if pareto_chart %}{{ pareto_chart|safe }}{% endif %}
{% for title, rows in tables %}<h2>{{ title }}</h2>
<table><tr><th></th><th>inspected</th><th>FAIL</th><th>REVIEW</th><th>defect rate</th><th>first-pass yield</th></tr>
{% for r in rows %}<tr><th>{{ r.key or "(no product)" }}</th>
<td>{{ r.inspected }}</td><td>{{ r.failed }}</td><td>{{ r.review }}</td>
<td>{{ "%.2f"|format(r.defect_rate * 100) }}%</td>
<td>{{ "%.2f"|format(r.first_pass_yield * 100) }}%</td></tr>{% endfor %}
</table>{% endfor %}
<h2>Alarms</h2>{% if not data.alarms %}<p>None.</p>{% endif %}
<table>{% for a in data.alarms %}<tr><th>{{ a.raised_at }}</th>
<td style="text-align:left">{{ a.station }} {{ a.rule }}: {{ a.message }}</td>
<td style="text-align:left">{% if a.acknowledged_by %}acknowledged by {{ a.acknowledged_by }}
{%- if a.note %}: {{ a.note }}{% endif %}{% else %}open{% endif %}</td></tr>{% endfor %}</table>
<h2>Model and rules changes</h2>{% if not data.versions %}<p>None.</p>{% endif %}
<table>{% for e in data.versions %}<tr><th>{{ e.at }}</th>
<td style="text-align:left">{{ e.station }}: {{ e.label }}</td></tr>{% endfor %}</table>
</body></html>
"""

CSV_COLUMNS = ("group", "key", "inspected", "failed", "review", "defect_rate", "first_pass_yield")


def window_of(*, shift: str | None, day: str | None, start: str | None, end: str | None, settings, now=None):
    """(since, until, title) in naive UTC from exactly one of --shift, --day or --from/--to."""
    from datetime import UTC, date, datetime, timedelta

    from inspection.analytics.shifts import shift_of, shift_span
    from inspection.errors import ConfigError
    from inspection.store.analytics import day_range

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
        return naive(span.start), naive(span.end), f"Shift {span.name} of {span.date}"
    if day is not None:
        local = datetime.now(plant.zone).date()
        chosen = {"today": local, "yesterday": local - timedelta(days=1)}.get(day) or date.fromisoformat(day)
        since, until = day_range(chosen, plant)
        return since, until, f"Day {chosen}"
    if not (start and end):
        raise ConfigError("--from and --to go together")

    def parse(text: str) -> datetime:
        value = datetime.fromisoformat(text.replace("Z", "+00:00"))
        return naive(value if value.tzinfo else value.replace(tzinfo=plant.zone))

    since, until = parse(start), parse(end)
    if until <= since:
        raise ConfigError("--to must be after --from")
    return since, until, f"{start} to {end}"


def write_report(db, settings, since, until, title: str, out: Path, *, station: str | None = None) -> tuple[Path, Path]:
    """report.csv and report.html for [since, until) in `out`."""
    import csv
    from datetime import timedelta

    from jinja2 import Environment, select_autoescape

    from inspection.analytics.charts import Series, line_chart, pareto_chart
    from inspection.store.analytics import AnalyticsStore

    analytics = AnalyticsStore(db)
    analytics.refresh()
    data = analytics.summary(since, until, shifts=settings.plant_shifts, station=station)
    out.mkdir(parents=True, exist_ok=True)
    csv_path, html_path = out / "report.csv", out / "report.html"
    tables = [("By station", data["by_station"]), ("By product", data["by_product"]), ("By class", data["by_class"]),
              ("By day", data["by_day"]), ("By shift", data["by_shift"])]
    with csv_path.open("w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(CSV_COLUMNS)
        writer.writerow(["total", *(data["total"][c] for c in CSV_COLUMNS[1:])])
        for group, rows in zip(("station", "product", "class", "day", "shift"), (t[1] for t in tables), strict=True):
            for row in rows:
                writer.writerow([group, *(row[c] for c in CSV_COLUMNS[1:])])
    step = timedelta(hours=1) if until - since <= timedelta(days=2) else timedelta(days=1)
    points = analytics.series(since, until, station=station, step=step)
    markers = [(e["at"], f"{e['station']}: {e['label']}") for e in analytics.versions(since, until, station=station)]
    rate_chart = line_chart([p["start"] for p in points],
                            [Series("defect rate", [p["defect_rate"] for p in points])],
                            markers=markers, title="Defect rate")
    pareto = data["pareto"]
    pareto_svg = pareto_chart([p["class"] for p in pareto], [p["failed_parts"] for p in pareto],
                              title="Pareto of defect classes") if pareto else ""
    template = Environment(autoescape=select_autoescape(default=True)).from_string(REPORT_HTML)
    html_path.write_text(template.render(title=f"QC report: {title}", window=f"{data['since']} to {data['until']}",
                                         data=data, tables=tables, rate_chart=rate_chart, pareto_chart=pareto_svg),
                         encoding="utf-8")
    return csv_path, html_path


def report(
    shift: Annotated[str | None, typer.Option("--shift", help="A shift: NAME (the latest that has started) or "
                                                                "'YYYY-MM-DD NAME'.")] = None,
    day: Annotated[str | None, typer.Option("--day", help="A plant day: YYYY-MM-DD, today or yesterday.")] = None,
    start: Annotated[str | None, typer.Option("--from", help="Start (ISO; plant time without an offset).")] = None,
    end: Annotated[str | None, typer.Option("--to", help="End (ISO; plant time without an offset).")] = None,
    station: Annotated[str | None, typer.Option(help="Only this station.")] = None,
    out: Annotated[Path, typer.Option(help="Folder for report.csv and report.html.")] = Path("."),
) -> None:
    """Defect rates per station, product, class, day and shift, Pareto, yield, alarms: CSV and printable HTML."""
    from inspection.store.database import Database
    from serving.settings import ServeSettings

    settings = ServeSettings()
    since, until, title = window_of(shift=shift, day=day, start=start, end=end, settings=settings)
    db = Database.from_settings(settings)
    try:
        csv_path, html_path = write_report(db, settings, since, until, title, out, station=station)
    finally:
        db.dispose()
    typer.echo(f"{title}: wrote {csv_path} and {html_path}")
