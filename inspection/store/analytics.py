"""Plant analytics in the database, in one store: `AnalyticsStore` is the rollups and rate
queries (rollups.py), the frozen SPC limits (spc_limits.py) and the alarms (alarms.py) over one
database, with the dashboard's `summary` that reads all three; and `frame_columns`, the
per-frame figures stored with each inspection.

Example::

    analytics = AnalyticsStore(db)
    analytics.refresh()                                   # fold new inspections into rollups
    rows = analytics.rates(since, until, by=Grouping.SHIFT, shifts=plant)
    frozen = analytics.freeze("line1-cam2", since, until, frozen_by="lee", subgroup_size=50)
    alarm = analytics.raise_alarm(AlarmKind.SPC, "line1-cam2", "", "EWMA", "...")  # None: already raised
    analytics.summary(since, until, shifts=plant)         # what the dashboard shows

Each part is also a store of its own (`RollupStore`, `LimitStore`, `AlarmStore` and its
`IncidentStore`) for a reader that needs only it.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from inspection.analytics.image_stats import ImageStats, Statistic
from inspection.analytics.shifts import ShiftSettings
from inspection.detections import Detections
from inspection.store.alarms import AlarmKind, AlarmRecord, alarm_key
from inspection.store.database import Database
from inspection.store.incidents import IncidentRecord, IncidentStore
from inspection.store.records import iso_z
from inspection.store.rollups import BUCKET, NO_PRODUCT, Grouping, RateRow, RollupStore, day_range, floor_bucket
from inspection.store.schema import (
    FRAME_COLUMNS,
    MAX_CONFIDENCE,
)
from inspection.store.spc_limits import ALL_CLASSES, FrameWindow, FrozenLimits, LimitStore, Subgroups

__all__ = ["ALL_CLASSES", "BUCKET", "NO_PRODUCT", "AlarmKind", "AlarmRecord", "AnalyticsStore", "FrameWindow",
           "FrozenLimits", "Grouping", "IncidentRecord", "RateRow", "Subgroups", "alarm_key", "day_range",
           "floor_bucket",
           "frame_columns"]


def frame_columns(stats: ImageStats, detections: Detections) -> dict[str, Any]:
    """The per-frame figures stored with an inspection (schema.FRAME_COLUMNS, in its order):
    its image statistics (`Statistic`, declared once in inspection/analytics/image_stats.py)
    and the highest confidence among the boxes the detector reported (0: none)."""
    best = float(detections.confidence.max()) if len(detections) else 0.0
    figures = {statistic.value: stats[statistic] for statistic in Statistic} | {MAX_CONFIDENCE: best}
    return {name: round(float(figures[name]), 4) for name in FRAME_COLUMNS}


class AnalyticsStore(RollupStore, LimitStore, IncidentStore):
    """Rollups, limits, alarms and their incidents over one database (each part's methods are its own)."""

    def __init__(self, db: Database) -> None:
        self.db = db

    def summary(self, since: datetime, until: datetime, *, shifts: ShiftSettings,
                station: str | None = None) -> dict[str, Any]:
        """Everything a dashboard, a report or an MES reads for [since, until), as JSON values."""
        total = self.rates(since, until, by=Grouping.STATION, station=station)
        whole = RateRow("all", sum(r.inspected for r in total), sum(r.failed for r in total),
                        sum(r.review for r in total))
        return {
            "since": iso_z(since), "until": iso_z(until), "station": station,
            "timezone": shifts.timezone, "shifts": [{"name": s.name, "start": s.start.isoformat("minutes")}
                                                    for s in shifts.shifts],
            "total": whole.to_json(),
            "by_station": [r.to_json() for r in total],
            "by_product": [r.to_json() for r in self.rates(since, until, by=Grouping.PRODUCT, station=station)],
            "by_class": [r.to_json() for r in self.rates(since, until, by=Grouping.CLASS, station=station)],
            "by_day": [r.to_json() for r in self.rates(since, until, by=Grouping.DAY, shifts=shifts,
                                                          station=station)],
            "by_shift": [r.to_json() for r in self.rates(since, until, by=Grouping.SHIFT, shifts=shifts,
                                                            station=station)],
            "pareto": self.pareto(since, until, station=station),
            "review": self.review_summary(since, until, station=station),
            "versions": [{**e, "at": iso_z(e["at"])} for e in self.versions(since, until, station=station)],
            "alarms": [a.to_json() for a in self.alarms(since=since, until=until, station=station)],
            "incidents": [i.to_json() for i in self.incidents(since=since, until=until, station=station,
                                                                limit=200)],
        }

    # -- subgroups and frames for the charts and the alarms ---------------------------------
