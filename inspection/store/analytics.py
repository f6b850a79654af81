"""Plant analytics in the database: rollups of defect counts, frozen SPC limits, alarms, and
the queries dashboards, reports and the alarm evaluator read.

Example::

    analytics = AnalyticsStore(db)
    analytics.refresh()                                   # fold new inspections into rollups
    rows = analytics.rates(since, until, by=Grouping.SHIFT, shifts=plant)
    frozen = analytics.freeze("line1-cam2", since, until, frozen_by="lee", subgroup_size=50)
    alarm = analytics.raise_alarm(AlarmKind.SPC, "line1-cam2", "", "EWMA", "...")  # None: already raised

Why rollups: a dashboard over a month of a busy plant reads a million inspections; counting
them on every page view scans them all. `rollup_counts` and `rollup_classes` hold the counts
per station and 15-minute UTC bucket (15 minutes: every plant zone's offset is a multiple of
it, so shifts starting on a quarter hour are whole buckets), and every query here reads those.
`refresh` recomputes the newest buckets from the raw rows (delete + insert in one transaction),
so a bucket is always exactly what its inspections say, however often it runs and in however
many processes (a second writer's insert hits the primary key and is dropped).
bench/analytics/store.py measures both ways over 1M inspections on SQLite and PostgreSQL.
"""

from __future__ import annotations

from bisect import bisect_right
from collections import defaultdict
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from enum import StrEnum
from typing import Any

import numpy as np
from sqlalchemy import BigInteger, cast, delete, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from inspection.analytics.image_stats import ImageStats, Statistic, stack
from inspection.analytics.shifts import ShiftSettings, shift_of, shift_spans
from inspection.analytics.spc import ChartKind, Limits, baseline_limits
from inspection.detections import Detections
from inspection.errors import ConfigError, NotFound
from inspection.rules import Verdict
from inspection.store.database import Database
from inspection.store.records import utcnow
from inspection.store.schema import (
    FRAME_COLUMNS,
    MAX_CONFIDENCE,
    alarms,
    defects,
    inspections,
    reviews,
    rollup_classes,
    rollup_counts,
    spc_limits,
    station_rules,
)

BUCKET = timedelta(minutes=15)
ALL_CLASSES = ""  # class_name of a chart, limit or alarm about the station as a whole
NO_PRODUCT = ""  # the product key of frames judged without a product (rollups, rates by product)


def frame_columns(stats: ImageStats, detections: Detections) -> dict[str, Any]:
    """The per-frame figures stored with an inspection (schema.FRAME_COLUMNS, in its order):
    its image statistics (`Statistic`, declared once in inspection/analytics/image_stats.py)
    and the highest confidence among the boxes the detector reported (0: none)."""
    best = float(detections.confidence.max()) if len(detections) else 0.0
    figures = {statistic.value: stats[statistic] for statistic in Statistic} | {MAX_CONFIDENCE: best}
    return {name: round(float(figures[name]), 4) for name in FRAME_COLUMNS}


class Grouping(StrEnum):
    """What a rate table is grouped by."""

    STATION = "station"
    PRODUCT = "product"  # the product judged; NO_PRODUCT ("") for frames judged without one
    CLASS = "class"
    DAY = "day"  # plant-local date
    SHIFT = "shift"  # plant-local date and shift name
    HOUR = "hour"  # UTC hour (charts)


class AlarmKind(StrEnum):
    SPC = "spc"  # the defect rate moved (a control chart rule)
    EQUIPMENT = "equipment"  # the images moved: light, lens, camera
    MODEL = "model"  # the confidences moved, the images did not: relabel and retrain


@dataclass(frozen=True)
class RateRow:
    """Counts of one group. `defect_rate` is FAIL / inspected; first-pass yield PASS / inspected."""

    key: str
    inspected: int
    failed: int
    review: int = 0

    @property
    def defect_rate(self) -> float:
        return self.failed / self.inspected if self.inspected else 0.0

    @property
    def first_pass_yield(self) -> float:
        return (self.inspected - self.failed - self.review) / self.inspected if self.inspected else 0.0

    def to_json(self) -> dict[str, Any]:
        return {"key": self.key, "inspected": self.inspected, "failed": self.failed, "review": self.review,
                "defect_rate": round(self.defect_rate, 5), "first_pass_yield": round(self.first_pass_yield, 5)}


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
                "baseline_from": _iso(self.baseline_from), "baseline_to": _iso(self.baseline_to),
                "frozen_by": self.frozen_by, "frozen_at": _iso(self.frozen_at)}


@dataclass(frozen=True)
class AlarmRecord:
    id: int
    station_id: str
    class_name: str
    kind: AlarmKind
    rule: str
    side: str | None
    message: str
    raised_at: datetime
    since: datetime | None
    cleared_at: datetime | None
    acknowledged_by: str | None
    acknowledged_at: datetime | None
    note: str

    @property
    def key(self) -> str:
        return alarm_key(self.station_id, self.class_name, self.rule)

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "station": self.station_id, "class": self.class_name, "kind": self.kind.value,
                "rule": self.rule, "side": self.side, "message": self.message,
                "raised_at": _iso(self.raised_at), "since": _iso(self.since), "cleared_at": _iso(self.cleared_at),
                "acknowledged_by": self.acknowledged_by, "acknowledged_at": _iso(self.acknowledged_at),
                "note": self.note}


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


def alarm_key(station: str, class_name: str, rule: str) -> str:
    return f"{station}|{class_name}|{rule}"


def _iso(value: datetime | None) -> str | None:
    return None if value is None else value.isoformat(timespec="seconds") + "Z"


def floor_bucket(instant: datetime) -> datetime:
    """The start of the 15-minute bucket holding a naive UTC instant."""
    seconds = int(instant.replace(tzinfo=UTC).timestamp()) // 900 * 900
    return datetime.fromtimestamp(seconds, UTC).replace(tzinfo=None)


class AnalyticsStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    # -- rollups ---------------------------------------------------------------------------

    def _epoch_bucket(self):
        """SQL: the bucket of inspections.created_at, as epoch seconds (dialect-specific)."""
        if self.db.is_sqlite:
            seconds = cast(func.strftime("%s", inspections.c.created_at), BigInteger)
            return seconds // 900 * 900  # floor division (SQLAlchemy 2: / is true division)
        buckets = func.floor(func.extract("epoch", inspections.c.created_at) / 900)
        return cast(buckets, BigInteger) * 900

    def refresh(self, now: datetime | None = None) -> int:
        """Recompute the rollups from the newest stored bucket on (all of them the first time;
        the bucket before the newest too, for records committed a little late). Returns how
        many buckets were written."""
        now = now or utcnow()
        with self.db.engine.connect() as conn:
            newest = conn.execute(select(func.max(rollup_counts.c.bucket))).scalar()
            if newest is None:
                start = conn.execute(select(func.min(inspections.c.created_at))).scalar()
                if start is None:
                    return 0
                start = floor_bucket(start)
            else:
                start = min(floor_bucket(newest), floor_bucket(now)) - BUCKET
        return self.rebuild(start)

    def rebuild(self, start: datetime, end: datetime | None = None) -> int:
        """Recompute every bucket from `start` (floored to its bucket) to `end` (or the last)."""
        start = floor_bucket(start)
        bucket = self._epoch_bucket().label("bucket")
        window = [inspections.c.created_at >= start]
        if end is not None:
            window.append(inspections.c.created_at < end)
        model = (inspections.c.model_name + "@" + inspections.c.model_version).label("model")
        product = func.coalesce(inspections.c.product, NO_PRODUCT).label("product")
        counts = (select(inspections.c.station_id, bucket, product, model, inspections.c.rules_version,
                         func.count().label("inspected"),
                         func.sum(_is(Verdict.FAIL)).label("failed"),
                         func.sum(_is(Verdict.REVIEW)).label("review"))
                  .where(*window)
                  .group_by(inspections.c.station_id, bucket, product, model, inspections.c.rules_version))
        classes = (select(inspections.c.station_id, bucket, defects.c.class_name,
                          func.count(func.distinct(inspections.c.id)).label("failed"),
                          func.count().label("defects"))
                   .join(defects, defects.c.inspection_id == inspections.c.id)
                   .where(*window, inspections.c.verdict == Verdict.FAIL.value)
                   .group_by(inspections.c.station_id, bucket, defects.c.class_name))

        def when(epoch) -> datetime:
            return datetime.fromtimestamp(int(epoch), UTC).replace(tzinfo=None)

        try:
            with self.db.engine.begin() as conn:
                count_rows = [{"station_id": r.station_id, "bucket": when(r.bucket), "product": r.product,
                               "model_version": r.model,
                               "rules_version": r.rules_version, "inspected": int(r.inspected),
                               "failed": int(r.failed or 0), "review": int(r.review or 0)}
                              for r in conn.execute(counts)]
                class_rows = [{"station_id": r.station_id, "bucket": when(r.bucket), "class_name": r.class_name,
                               "failed": int(r.failed), "defects": int(r.defects)} for r in conn.execute(classes)]
                for table in (rollup_counts, rollup_classes):
                    condition = [table.c.bucket >= start] + ([table.c.bucket < end] if end is not None else [])
                    conn.execute(delete(table).where(*condition))
                if count_rows:
                    conn.execute(insert(rollup_counts), count_rows)
                if class_rows:
                    conn.execute(insert(rollup_classes), class_rows)
        except IntegrityError:
            return 0  # another process rebuilt the same buckets at the same moment: theirs stand
        return len({(r["station_id"], r["bucket"]) for r in count_rows})

    # -- rates -----------------------------------------------------------------------------

    def _counts(self, since: datetime, until: datetime, station: str | None = None, *,
                by: Grouping = Grouping.HOUR):
        """Rollup sums per bucket (or per station, or product), summed in the database: a month
        of ten stations is ~30,000 rollup rows but 2,880 buckets."""
        key = {Grouping.STATION: rollup_counts.c.station_id,
               Grouping.PRODUCT: rollup_counts.c.product}.get(by, rollup_counts.c.bucket)
        query = (select(key.label("key"), func.sum(rollup_counts.c.inspected).label("inspected"),
                        func.sum(rollup_counts.c.failed).label("failed"),
                        func.sum(rollup_counts.c.review).label("review"))
                 .where(rollup_counts.c.bucket >= floor_bucket(since), rollup_counts.c.bucket < until)
                 .group_by(key))
        if station:
            query = query.where(rollup_counts.c.station_id == station)
        with self.db.engine.connect() as conn:
            return [(k, int(n), int(f or 0), int(r or 0)) for k, n, f, r in conn.execute(query)]

    def _classes(self, since: datetime, until: datetime, station: str | None = None):
        """(class, failed parts, defects) summed over the window."""
        query = (select(rollup_classes.c.class_name, func.sum(rollup_classes.c.failed),
                        func.sum(rollup_classes.c.defects))
                 .where(rollup_classes.c.bucket >= floor_bucket(since), rollup_classes.c.bucket < until)
                 .group_by(rollup_classes.c.class_name))
        if station:
            query = query.where(rollup_classes.c.station_id == station)
        with self.db.engine.connect() as conn:
            return [(name, int(f), int(d)) for name, f, d in conn.execute(query)]

    def rates(self, since: datetime, until: datetime, *, by: Grouping, shifts: ShiftSettings | None = None,
              station: str | None = None) -> list[RateRow]:
        """Defect rate and first-pass yield per group over [since, until) (naive UTC, whole
        buckets). By CLASS: parts failed with a box of each class, out of all inspected. By
        PRODUCT: the product each part was judged as ("" for none)."""
        by = Grouping(by)
        if by is Grouping.CLASS:
            inspected = sum(n for _, n, _, _ in self._counts(since, until, station, by=Grouping.STATION))
            rows = (RateRow(name, inspected, failed) for name, failed, _ in self._classes(since, until, station))
            return sorted(rows, key=lambda row: (-row.failed, row.key))
        rows = self._counts(since, until, station, by=by)
        key = self._grouper(by, shifts, rows)
        sums: dict[str, list[int]] = defaultdict(lambda: [0, 0, 0])
        for row in rows:
            total = sums[key(row[0])]
            total[0] += row[1]
            total[1] += row[2]
            total[2] += row[3]
        return [RateRow(k, *v) for k, v in sorted(sums.items())]

    def _grouper(self, by: Grouping, shifts: ShiftSettings | None, rows) -> Callable[[Any], str]:
        """Row key (a station, a product, or a bucket's start) to its group's name."""
        if by in (Grouping.STATION, Grouping.PRODUCT):
            return lambda key: key
        if by is Grouping.HOUR:
            return lambda bucket: bucket.replace(minute=0).isoformat(timespec="minutes") + "Z"
        if shifts is None:
            raise ConfigError("grouping by day or shift needs the plant's shifts and time zone")
        if not rows:
            return lambda bucket: ""
        # The shifts covering the rows, once; each bucket is then found by bisection (a bucket
        # never straddles a shift start: starts are on quarter hours, as buckets are).
        first = min(r[0] for r in rows).replace(tzinfo=UTC)
        last = max(r[0] for r in rows).replace(tzinfo=UTC)
        spans = shift_spans(shift_of(first, shifts).date, shift_of(last, shifts).date, shifts)
        starts = [span.start.replace(tzinfo=None) for span in spans]
        names = [span.date.isoformat() if by is Grouping.DAY else f"{span.date} {span.name}" for span in spans]
        return lambda bucket: names[bisect_right(starts, bucket) - 1]

    def pareto(self, since: datetime, until: datetime, *, station: str | None = None) -> list[dict[str, Any]]:
        """Defect classes by the parts they failed, most first, with the cumulative share."""
        ordered = sorted(((name, (failed, found)) for name, failed, found in self._classes(since, until, station)),
                         key=lambda item: (-item[1][0], item[0]))
        whole = sum(v[0] for _, v in ordered) or 1
        running, out = 0, []
        for name, (failed, found) in ordered:
            running += failed
            out.append({"class": name, "failed_parts": failed, "defects": found,
                        "share": round(failed / whole, 4), "cumulative": round(running / whole, 4)})
        return out

    def series(self, since: datetime, until: datetime, *, station: str | None = None,
               step: timedelta = timedelta(hours=1)) -> list[dict[str, Any]]:
        """Defect rate per `step` (a multiple of 15 minutes) for charts, oldest first."""
        width = max(int(step / BUCKET), 1)
        sums: dict[datetime, list[int]] = defaultdict(lambda: [0, 0, 0])
        for bucket, inspected, failed, review in self._counts(since, until, station):
            index = int((bucket - floor_bucket(since)) / BUCKET) // width
            total = sums[floor_bucket(since) + index * width * BUCKET]
            total[0] += inspected
            total[1] += failed
            total[2] += review
        return [{"start": start, "inspected": n, "failed": f, "review": rv, "defect_rate": f / n if n else 0.0}
                for start, (n, f, rv) in sorted(sums.items())]

    def versions(self, since: datetime, until: datetime, *, station: str | None = None) -> list[dict[str, Any]]:
        """When each model version first judged a station's parts, when each rules version
        was made, and the changeovers (the 15-minute bucket in which a product appears at a
        station that judged other products, or none, in its previous bucket): the timeline
        drawn on the charts, so a jump in a rate can be told from a change of model, rules or
        product."""
        query = (select(rollup_counts.c.station_id, rollup_counts.c.model_version,
                        func.min(rollup_counts.c.bucket).label("first"))
                 .group_by(rollup_counts.c.station_id, rollup_counts.c.model_version))
        rules = select(station_rules.c.station_id, station_rules.c.version, station_rules.c.created_at).where(
            station_rules.c.created_at >= since, station_rules.c.created_at < until)
        if station:
            query = query.where(rollup_counts.c.station_id == station)
            rules = rules.where(station_rules.c.station_id == station)
        events: list[dict[str, Any]] = []
        with self.db.engine.connect() as conn:
            events.extend({"at": r.first, "station": r.station_id, "what": "model", "label": r.model_version}
                          for r in conn.execute(query) if since <= r.first < until)
            events.extend({"at": r.created_at, "station": r.station_id, "what": "rules",
                           "label": f"rules v{r.version}"} for r in conn.execute(rules))
            events.extend(self._changeovers(conn, since, until, station))
        return sorted(events, key=lambda e: e["at"])

    def _changeovers(self, conn, since: datetime, until: datetime, station: str | None) -> list[dict[str, Any]]:
        # From the rollups (one row per bucket and product), so a day's timeline reads 96
        # buckets a station, not its million frames. The bucket before the window says what
        # was on the line when it opened: a product that merely continues is no changeover.
        query = (select(rollup_counts.c.station_id, rollup_counts.c.bucket, rollup_counts.c.product).distinct()
                 .where(rollup_counts.c.bucket >= since - BUCKET, rollup_counts.c.bucket < until)
                 .order_by(rollup_counts.c.station_id, rollup_counts.c.bucket))
        if station:
            query = query.where(rollup_counts.c.station_id == station)
        by_bucket: dict[tuple[str, datetime], set[str]] = {}
        for row in conn.execute(query):
            by_bucket.setdefault((row.station_id, row.bucket), set()).add(row.product)
        events: list[dict[str, Any]] = []
        before: dict[str, set[str]] = {}  # each station's products in its previous bucket
        for (station_id, bucket), products in by_bucket.items():  # in station, then time order
            previous = before.get(station_id)
            if previous is not None and bucket >= since:
                events.extend({"at": bucket, "station": station_id, "what": "product", "label": f"product {name}"}
                              for name in sorted(products - previous) if name)
            before[station_id] = products
        return events

    def review_summary(self, since: datetime, until: datetime, *, station: str | None = None) -> dict[str, Any]:
        """The review backlog (flagged, never reviewed) and how reviewers judged the model:
        per model verdict, the latest decision on each reviewed frame."""
        flagged = [Verdict.FAIL.value, Verdict.REVIEW.value]
        window = [inspections.c.created_at >= since, inspections.c.created_at < until,
                  inspections.c.verdict.in_(flagged)]
        if station:
            window.append(inspections.c.station_id == station)
        latest = (select(func.max(reviews.c.id)).join(inspections, inspections.c.id == reviews.c.inspection_id)
                  .where(*window).group_by(reviews.c.inspection_id))
        outcomes = (select(reviews.c.model_verdict, reviews.c.decision, func.count())
                    .where(reviews.c.id.in_(latest)).group_by(reviews.c.model_verdict, reviews.c.decision))
        reviewed = select(reviews.c.inspection_id).where(reviews.c.decision != "retracted")
        with self.db.engine.connect() as conn:
            total = conn.execute(select(func.count()).select_from(inspections).where(*window)).scalar() or 0
            table = [(v, d, int(n)) for v, d, n in conn.execute(outcomes)]
            open_count = conn.execute(select(func.count()).select_from(inspections).where(
                *window, inspections.c.id.not_in(reviewed))).scalar() or 0
        decided = {(v, d): n for v, d, n in table if d != "retracted"}
        fail_reviewed = sum(n for (v, _), n in decided.items() if v == Verdict.FAIL.value)
        fail_confirmed = decided.get((Verdict.FAIL.value, "defect"), 0)
        return {"flagged": int(total), "backlog": int(open_count),
                "outcomes": [{"model_verdict": v, "decision": d, "frames": n} for v, d, n in table],
                "fail_confirmed_share": round(fail_confirmed / fail_reviewed, 4) if fail_reviewed else None}

    def summary(self, since: datetime, until: datetime, *, shifts: ShiftSettings,
                station: str | None = None) -> dict[str, Any]:
        """Everything a dashboard, a report or an MES reads for [since, until), as JSON values."""
        total = self.rates(since, until, by=Grouping.STATION, station=station)
        whole = RateRow("all", sum(r.inspected for r in total), sum(r.failed for r in total),
                        sum(r.review for r in total))
        return {
            "since": _iso(since), "until": _iso(until), "station": station,
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
            "versions": [{**e, "at": _iso(e["at"])} for e in self.versions(since, until, station=station)],
            "alarms": [a.to_json() for a in self.alarms(since=since, until=until, station=station)],
        }

    # -- subgroups and frames for the charts and the alarms ---------------------------------

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
               last: int | None = None) -> FrameWindow:
        """Image statistics and max confidences of a station's frames (those that have them),
        oldest first: the `last` ones when given."""
        columns = [inspections.c[name] for name in FRAME_COLUMNS]
        query = select(inspections.c.created_at, inspections.c.alignment_score, *columns).where(
            inspections.c.station_id == station, inspections.c.brightness.is_not(None))
        if after is not None:
            query = query.where(inspections.c.created_at > after)
        if until is not None:
            query = query.where(inspections.c.created_at <= until)
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

    def raise_alarm(self, kind: AlarmKind, station: str, class_name: str, rule: str, message: str, *,
                    side: str | None = None, since: datetime | None = None) -> AlarmRecord | None:
        """Store an alarm unless the same (station, class, rule) is active: returns the new
        alarm, or None when it was already raised and has not cleared since."""
        key = alarm_key(station, class_name, rule)
        try:
            with self.db.engine.begin() as conn:
                new_id = conn.execute(alarms.insert().values(
                    station_id=station, class_name=class_name, kind=AlarmKind(kind).value, rule=rule, side=side,
                    message=message, raised_at=utcnow(), since=since, active_key=key, note="",
                )).inserted_primary_key[0]  # type: ignore[index]  # never None after an insert
        except IntegrityError:
            return None  # the unique active_key: this condition is already stored
        return self.alarm(int(new_id))

    def active(self, station: str | None = None) -> dict[str, AlarmRecord]:
        """Alarms whose condition still holds (not cleared), by key."""
        query = select(alarms).where(alarms.c.active_key.is_not(None))
        if station:
            query = query.where(alarms.c.station_id == station)
        with self.db.engine.connect() as conn:
            return {a.key: a for a in map(_alarm, conn.execute(query).mappings())}

    def clear(self, keys: Iterable[str]) -> int:
        """The conditions behind these keys ended: a new occurrence may be raised again."""
        keys = list(keys)
        if not keys:
            return 0
        with self.db.engine.begin() as conn:
            return conn.execute(update(alarms).where(alarms.c.active_key.in_(keys))
                                .values(active_key=None, cleared_at=utcnow())).rowcount

    def acknowledge(self, alarm_id: int, *, by: str, note: str = "") -> AlarmRecord:
        if len(note) > 2000:
            raise ConfigError("a note holds at most 2000 characters")
        with self.db.engine.begin() as conn:
            done = conn.execute(update(alarms).where(alarms.c.id == alarm_id).values(
                acknowledged_by=by, acknowledged_at=utcnow(), note=note)).rowcount
        if not done:
            raise NotFound(f"alarm {alarm_id} does not exist")
        return self.alarm(alarm_id)

    def alarm(self, alarm_id: int) -> AlarmRecord:
        with self.db.engine.connect() as conn:
            row = conn.execute(select(alarms).where(alarms.c.id == alarm_id)).mappings().first()
        if row is None:
            raise NotFound(f"alarm {alarm_id} does not exist")
        return _alarm(row)

    def alarms(self, *, unacknowledged: bool = False, since: datetime | None = None,
               until: datetime | None = None, station: str | None = None, limit: int = 200) -> list[AlarmRecord]:
        """Newest first."""
        query = select(alarms)
        if unacknowledged:
            query = query.where(alarms.c.acknowledged_at.is_(None))
        if since is not None:
            query = query.where(alarms.c.raised_at >= since)
        if until is not None:
            query = query.where(alarms.c.raised_at < until)
        if station:
            query = query.where(alarms.c.station_id == station)
        with self.db.engine.connect() as conn:
            return [_alarm(r) for r in conn.execute(query.order_by(alarms.c.id.desc()).limit(limit)).mappings()]

    def open_counts(self) -> dict[str, int]:
        """Unacknowledged alarms by kind (a Prometheus gauge)."""
        query = (select(alarms.c.kind, func.count()).where(alarms.c.acknowledged_at.is_(None))
                 .group_by(alarms.c.kind))
        with self.db.engine.connect() as conn:
            return {kind: int(n) for kind, n in conn.execute(query)}


def _is(verdict: Verdict):
    from sqlalchemy import case

    return case((inspections.c.verdict == verdict.value, 1), else_=0)


def _alarm(row) -> AlarmRecord:
    return AlarmRecord(id=int(row["id"]), station_id=row["station_id"], class_name=row["class_name"],
                       kind=AlarmKind(row["kind"]), rule=row["rule"], side=row["side"], message=row["message"],
                       raised_at=row["raised_at"], since=row["since"], cleared_at=row["cleared_at"],
                       acknowledged_by=row["acknowledged_by"], acknowledged_at=row["acknowledged_at"],
                       note=row["note"] or "")


def day_range(day: date, shifts: ShiftSettings) -> tuple[datetime, datetime]:
    """A plant-local date's span as naive UTC: from its first shift's start to the next day's."""
    from inspection.analytics.shifts import shift_spans

    spans = shift_spans(day, day, shifts)
    return spans[0].start.replace(tzinfo=None), spans[-1].end.replace(tzinfo=None)
