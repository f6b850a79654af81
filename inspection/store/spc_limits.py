"""Frozen SPC limits and the subgroups and frame windows charted against them.

Example::

    limits = LimitStore(db)
    frozen = limits.freeze("line1-cam2", since, until, frozen_by="lee", subgroup_size=50)
    groups = limits.subgroups("line1-cam2", size=50, after=frozen[0].baseline_to, last=60)
    window = limits.frames("line1-cam2", after=frozen[0].baseline_to, last=500)   # drift's input

An engineer freezes a baseline window: the p-chart of the station and of each class that
failed parts in it, and the station's u-chart (defects per part), each with its centre and
limits; the window is also the drift reference (inspection/analytics/drift.py).
"""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import numpy as np
from sqlalchemy import func, select

from inspection.analytics.image_stats import stack
from inspection.analytics.spc import ChartKind, Limits, baseline_limits
from inspection.errors import ConfigError
from inspection.rules import Verdict
from inspection.store.database import Database
from inspection.store.records import iso_z, utcnow
from inspection.store.schema import (
    FRAME_COLUMNS,
    defects,
    inspections,
    spc_limits,
)

ALL_CLASSES = ""  # class_name of a chart, limit or alarm about the station as a whole


@dataclass(frozen=True)
class FrozenLimits:
    id: int
    station_id: str
    class_name: str
    limits: Limits
    subgroup_size: int
    baseline_from: datetime
    baseline_to: datetime
    frozen_by: str
    frozen_at: datetime

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "station": self.station_id, "class": self.class_name,
                "limits": self.limits.to_dict(), "subgroup_size": self.subgroup_size,
                "baseline_from": iso_z(self.baseline_from), "baseline_to": iso_z(self.baseline_to),
                "frozen_by": self.frozen_by, "frozen_at": iso_z(self.frozen_at)}



@dataclass
class Subgroups:
    """Consecutive subgroups of `size` inspections of a station (the oldest first): defective
    parts (FAIL), defects (boxes on FAIL frames), and the time of each subgroup's last part."""

    size: int
    failed: np.ndarray
    defects: np.ndarray
    times: list[datetime] = field(default_factory=list)
    first_index: int = 0  # the number of the first subgroup counted from the start

    def __len__(self) -> int:
        return len(self.failed)


@dataclass(frozen=True)
class FrameWindow:
    stats: np.ndarray  # (N, len(Statistic)), columns as Statistic
    confidence: np.ndarray  # (N,)
    times: list[datetime]
    alignment: np.ndarray = field(default_factory=lambda: np.zeros(0))  # (N,) scores, NaN: not aligned

    @property
    def aligned(self) -> np.ndarray:
        """The alignment scores of the frames judged against a reference image."""
        return self.alignment[~np.isnan(self.alignment)] if len(self.alignment) else self.alignment



class LimitStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    def subgroups(self, station: str, *, size: int, after: datetime, until: datetime | None = None,
                  last: int | None = None, class_name: str = ALL_CLASSES) -> Subgroups:
        """Complete subgroups of `size` consecutive inspections of `station` after `after`
        (and before `until`), numbered from `after` so they are the same at every evaluation;
        only the `last` of them when given. For a class: parts failed with a box of it."""
        window = [inspections.c.station_id == station, inspections.c.created_at > after]
        if until is not None:
            window.append(inspections.c.created_at <= until)
        with self.db.engine.connect() as conn:
            total = conn.execute(select(func.count()).select_from(inspections).where(*window)).scalar() or 0
            complete = total // size
            first = max(complete - last, 0) if last else 0
            query = (select(inspections.c.id, inspections.c.created_at, inspections.c.verdict).where(*window)
                     .order_by(inspections.c.created_at, inspections.c.id)
                     .offset(first * size).limit((complete - first) * size))
            rows = conn.execute(query).all()
            fail_ids = [r.id for r in rows if r.verdict == Verdict.FAIL.value]
            boxes: dict[str, int] = defaultdict(int)
            for chunk in range(0, len(fail_ids), 500):
                counting = select(defects.c.inspection_id, func.count()).where(
                    defects.c.inspection_id.in_(fail_ids[chunk:chunk + 500]))
                if class_name:
                    counting = counting.where(defects.c.class_name == class_name)
                for inspection_id, n in conn.execute(counting.group_by(defects.c.inspection_id)):
                    boxes[inspection_id] = int(n)
        failed = np.zeros(complete - first, np.int64)
        found = np.zeros(complete - first, np.int64)
        times = []
        for index in range(complete - first):
            part = rows[index * size:(index + 1) * size]
            for r in part:
                if r.verdict == Verdict.FAIL.value and (not class_name or boxes.get(r.id)):
                    failed[index] += 1
                    found[index] += boxes.get(r.id, 0)
            times.append(part[-1].created_at)
        return Subgroups(size=size, failed=failed, defects=found, times=times, first_index=first)

    def frames(self, station: str, *, after: datetime | None = None, until: datetime | None = None,
               last: int | None = None, passing: bool = False) -> FrameWindow:
        """Image statistics and max confidences of a station's frames (those that have them),
        oldest first: the `last` ones when given; only those judged PASS with `passing`."""
        columns = [inspections.c[name] for name in FRAME_COLUMNS]
        query = select(inspections.c.created_at, inspections.c.alignment_score, *columns).where(
            inspections.c.station_id == station, inspections.c.brightness.is_not(None))
        if after is not None:
            query = query.where(inspections.c.created_at > after)
        if until is not None:
            query = query.where(inspections.c.created_at <= until)
        if passing:
            query = query.where(inspections.c.verdict == Verdict.PASS.value)
        query = query.order_by(inspections.c.created_at.desc(), inspections.c.id.desc())
        if last:
            query = query.limit(last)
        with self.db.engine.connect() as conn:
            rows = conn.execute(query).all()[::-1]
        if not rows:
            return FrameWindow(stack([]), np.zeros(0), [])
        values = np.array([[float(v) for v in r[2:]] for r in rows], np.float64)
        alignment = np.array([np.nan if r[1] is None else float(r[1]) for r in rows], np.float64)
        return FrameWindow(values[:, :-1], values[:, -1], [r[0] for r in rows], alignment)


    # -- frozen limits ---------------------------------------------------------------------

    def freeze(self, station: str, since: datetime, until: datetime, *, frozen_by: str,
               subgroup_size: int = 50, k_sigma: float = 3.0) -> list[FrozenLimits]:
        """Freeze p-chart limits for the station and each class that failed parts in the
        baseline window [since, until], and its u-chart (defects per part), from complete
        subgroups of `subgroup_size`. The window is also the drift reference."""
        if subgroup_size < 1:
            raise ConfigError("subgroup_size must be at least 1")
        if until <= since:
            raise ConfigError("the baseline window must end after it starts")
        whole = self.subgroups(station, size=subgroup_size, after=since, until=until)
        if len(whole) < 2:
            raise ConfigError(f"station {station} has fewer than 2 complete subgroups of {subgroup_size} in the "
                              "baseline window; choose a longer window or a smaller subgroup")
        sizes = np.full(len(whole), subgroup_size)
        charts: list[tuple[str, Limits]] = [(ALL_CLASSES, baseline_limits(ChartKind.P, whole.failed, sizes,
                                                                          k_sigma=k_sigma))]
        if whole.defects.sum() > 0:
            charts.append((ALL_CLASSES, baseline_limits(ChartKind.U, whole.defects, sizes, k_sigma=k_sigma)))
        for name in self._classes_failed(station, since, until):
            groups = self.subgroups(station, size=subgroup_size, after=since, until=until, class_name=name)
            if groups.failed.sum() > 0:
                charts.append((name, baseline_limits(ChartKind.P, groups.failed, sizes, k_sigma=k_sigma)))
        now = utcnow()
        with self.db.engine.begin() as conn:
            for name, limits in charts:
                conn.execute(spc_limits.insert().values(
                    station_id=station, class_name=name, kind=limits.kind.value,
                    limits=limits.to_dict(), subgroup_size=subgroup_size, baseline_from=since, baseline_to=until,
                    frozen_by=frozen_by, frozen_at=now))
        return self.limits(station)

    def _classes_failed(self, station: str, since: datetime, until: datetime) -> list[str]:
        query = (select(defects.c.class_name).distinct().join(inspections, inspections.c.id == defects.c.inspection_id)
                 .where(inspections.c.station_id == station, inspections.c.created_at > since,
                        inspections.c.created_at <= until, inspections.c.verdict == Verdict.FAIL.value))
        with self.db.engine.connect() as conn:
            return sorted(r[0] for r in conn.execute(query))

    def limits(self, station: str | None = None) -> list[FrozenLimits]:
        """The limits in force: the newest freeze of each (station, class, kind)."""
        newest = select(func.max(spc_limits.c.id)).group_by(
            spc_limits.c.station_id, spc_limits.c.class_name, spc_limits.c.kind)
        query = select(spc_limits).where(spc_limits.c.id.in_(newest)).order_by(
            spc_limits.c.station_id, spc_limits.c.kind, spc_limits.c.class_name)
        if station:
            query = query.where(spc_limits.c.station_id == station)
        with self.db.engine.connect() as conn:
            return [FrozenLimits(id=r["id"], station_id=r["station_id"], class_name=r["class_name"],
                                 limits=Limits.from_dict(r["limits"]), subgroup_size=r["subgroup_size"],
                                 baseline_from=r["baseline_from"], baseline_to=r["baseline_to"],
                                 frozen_by=r["frozen_by"], frozen_at=r["frozen_at"])
                    for r in conn.execute(query).mappings()]

    # -- alarms ----------------------------------------------------------------------------
