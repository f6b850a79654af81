"""Charts drawn as SVG text on the server: the dashboard and the printable report embed them,
so no page loads a chart library, a font or anything else from elsewhere.

Example::

    >>> from datetime import datetime, timedelta
    >>> from inspection.analytics.charts import Series, line_chart
    >>> hours = [datetime(2026, 3, 2, 6) + timedelta(hours=i) for i in range(4)]
    >>> svg = line_chart(hours, [Series("defect rate", [0.02, 0.025, 0.018, 0.06])],
    ...                  markers=[(hours[2], "model v3")], title="line1")
    >>> svg.startswith("<svg") and "model v3" in svg
    True

Plain SVG 1.1 elements with classes (styled by the page's stylesheet, with inline defaults so a
chart also reads when printed or opened alone); every text is escaped.
"""

from __future__ import annotations

import math
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime
from html import escape

PALETTE = ("#1d4f91", "#c62828", "#2e7d32", "#b26a00", "#6a1b9a", "#00838f", "#5d4037")


@dataclass(frozen=True)
class Series:
    name: str
    values: Sequence[float | None]  # None: no point (a gap)
    dashed: bool = False
    colour: str | None = None


def _ticks(high: float, count: int = 4) -> list[float]:
    if high <= 0:
        return [0.0]
    raw = high / count
    step = 10 ** math.floor(math.log10(raw))
    for factor in (1, 2, 2.5, 5, 10):
        if raw <= factor * step:
            step *= factor
            break
    return [i * step for i in range(int(high / step) + 2) if i * step <= high * 1.0001 + step]


def text_width(text: str, size: float) -> float:
    """About how wide `text` is drawn at font size `size`: a Hangul or other wide character
    takes a full em, a Latin letter or digit about 0.6 of one. The legend places each entry
    after the previous one's width; counting every character as Latin overlapped Korean names."""
    return sum(size if unicodedata.east_asian_width(c) in ("W", "F") else 0.6 * size for c in text)


def _label(value: float, percent: bool) -> str:
    if percent:
        return f"{value * 100:.3g}%"
    return f"{value:.3g}"


def line_chart(x: Sequence[datetime], series: Sequence[Series], *, title: str = "",
               markers: Sequence[tuple[datetime, str]] = (), highlight: Sequence[int] = (),
               percent: bool = True, width: int = 720, height: int = 240) -> str:
    """Lines over time: `series` share the x positions `x`; `markers` are vertical lines (a model
    or rules change) with their labels; `highlight` rings the points of the first series at these
    indices (alarms)."""
    # The bottom holds the time labels (baseline at height - 20) and below them the legend
    # (baseline at height - 3), each a line of its own.
    left, right, top, bottom = 56, 12, 24 if title else 10, 40
    plot_w, plot_h = width - left - right, height - top - bottom
    values = [v for s in series for v in s.values if v is not None and math.isfinite(v)]
    high = max(values, default=0.0) * 1.1 or (0.01 if percent else 1.0)
    ticks = _ticks(high)
    high = max(high, ticks[-1])
    if x:
        start, end = x[0], x[-1]
    else:
        start = end = datetime(2000, 1, 1)
    span = (end - start).total_seconds() or 1.0

    def px(when: datetime) -> float:
        return left + plot_w * ((when - start).total_seconds() / span if len(x) > 1 else 0.5)

    def py(value: float) -> float:
        return top + plot_h * (1 - value / high)

    out = [(f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" viewBox="0 0 {width} {height}" '
            f'width="{width}" height="{height}" role="img" aria-label="{escape(title)}">')]
    if title:
        out.append(f'<text x="{left}" y="15" font-size="13" font-weight="600" fill="#1b1f24">{escape(title)}</text>')
    for tick in ticks:
        y = py(tick)
        out.append(f'<line x1="{left}" x2="{width - right}" y1="{y:.1f}" y2="{y:.1f}" stroke="#e3e7eb"/>')
        out.append(f'<text x="{left - 6}" y="{y + 4:.1f}" font-size="11" text-anchor="end" fill="#5b6570">'
                   f'{_label(tick, percent)}</text>')
    if x:
        for index in sorted({0, len(x) // 2, len(x) - 1}):
            anchor = "start" if index == 0 else ("end" if index == len(x) - 1 else "middle")
            out.append(f'<text x="{px(x[index]):.1f}" y="{height - 20}" font-size="11" text-anchor="{anchor}" '
                       f'fill="#5b6570">{escape(x[index].strftime("%m-%d %H:%M"))}</text>')
    for when, label in markers:
        if x and start <= when <= end:
            mx = px(when)
            out.append(f'<g class="marker"><line x1="{mx:.1f}" x2="{mx:.1f}" y1="{top}" y2="{top + plot_h}" '
                       f'stroke="#6a1b9a" stroke-dasharray="4 3"/><text x="{mx + 3:.1f}" y="{top + 11}" '
                       f'font-size="11" fill="#6a1b9a">{escape(label)}</text></g>')
    for number, line in enumerate(series):
        colour = line.colour or PALETTE[number % len(PALETTE)]
        dash = ' stroke-dasharray="6 4"' if line.dashed else ""
        path, pen = [], "M"
        for when, value in zip(x, line.values, strict=True):
            if value is None or not math.isfinite(value):
                pen = "M"
                continue
            path.append(f"{pen}{px(when):.1f},{py(min(value, high)):.1f}")
            pen = "L"
        if path:
            out.append(f'<path class="series" d="{" ".join(path)}" fill="none" stroke="{colour}" '
                       f'stroke-width="2"{dash}><title>{escape(line.name)}</title></path>')
        if number == 0 and len(x) <= 120:
            for when, value in zip(x, line.values, strict=True):
                if value is not None and math.isfinite(value):
                    out.append(f'<circle cx="{px(when):.1f}" cy="{py(min(value, high)):.1f}" r="2.5" fill="{colour}"/>')
    for index in highlight:
        ringed = series[0].values[index] if series and 0 <= index < len(x) else None
        if ringed is not None:
            cy = py(min(ringed, high))
            out.append(f'<circle class="alarm" cx="{px(x[index]):.1f}" cy="{cy:.1f}" '
                       f'r="6" fill="none" stroke="#c62828" stroke-width="2"/>')
    legend_x: float = left
    for number, line in enumerate(series):
        colour = line.colour or PALETTE[number % len(PALETTE)]
        out.append(f'<g class="legend"><rect x="{legend_x:.1f}" y="{height - 8}" width="10" height="3" '
                   f'fill="{colour}"/><text x="{legend_x + 14:.1f}" y="{height - 3}" font-size="10" fill="#5b6570">'
                   f'{escape(line.name)}</text></g>')
        legend_x += 14 + text_width(line.name, 10) + 12
    out.append("</svg>")
    return "".join(out)


def pareto_chart(labels: Sequence[str], counts: Sequence[int], *, title: str = "", width: int = 720,
                 height: int = 240) -> str:
    """Bars of counts, most first, and the cumulative share as a line (right axis, 0-100%)."""
    left, right, top, bottom = 48, 44, 24 if title else 10, 40
    plot_w, plot_h = width - left - right, height - top - bottom
    total = sum(counts) or 1
    high: float = max(counts, default=0) or 1
    ticks = _ticks(high * 1.05)
    high = max(high, ticks[-1])
    out = [(f'<svg xmlns="http://www.w3.org/2000/svg" class="chart" viewBox="0 0 {width} {height}" '
            f'width="{width}" height="{height}" role="img" aria-label="{escape(title)}">')]
    if title:
        out.append(f'<text x="{left}" y="15" font-size="13" font-weight="600" fill="#1b1f24">{escape(title)}</text>')
    for tick in ticks:
        y = top + plot_h * (1 - tick / high)
        out.append(f'<line x1="{left}" x2="{width - right}" y1="{y:.1f}" y2="{y:.1f}" stroke="#e3e7eb"/>'
                   f'<text x="{left - 6}" y="{y + 4:.1f}" font-size="11" text-anchor="end" fill="#5b6570">'
                   f'{tick:g}</text>')
    n = max(len(counts), 1)
    slot = plot_w / n
    running, points = 0, []
    for i, (label, count) in enumerate(zip(labels, counts, strict=True)):
        x = left + i * slot
        h = plot_h * count / high
        out.append(f'<rect class="bar" x="{x + slot * 0.15:.1f}" y="{top + plot_h - h:.1f}" width="{slot * 0.7:.1f}" '
                   f'height="{h:.1f}" fill="#1d4f91"><title>{escape(label)}: {count}</title></rect>'
                   f'<text x="{x + slot / 2:.1f}" y="{height - bottom + 14}" font-size="11" text-anchor="middle" '
                   f'fill="#1b1f24">{escape(label[:14])}</text>')
        running += count
        points.append(f"{x + slot / 2:.1f},{top + plot_h * (1 - running / total):.1f}")
    if points:
        out.append(f'<polyline points="{" ".join(points)}" fill="none" stroke="#c62828" stroke-width="2"/>')
    for share in (0, 0.5, 0.8, 1.0):
        y = top + plot_h * (1 - share)
        out.append(f'<text x="{width - right + 4}" y="{y + 4:.1f}" font-size="11" fill="#c62828">{share:.0%}</text>')
    out.append("</svg>")
    return "".join(out)
