"""Rollups of defect counts and the rate queries that read them: per station/product/version
and 15-minute bucket, per class; rates by station, product, class, plant day and shift,
Pareto, time series, model versions and changeovers, review backlog and agreement.

Example::

    rollups = RollupStore(db)            # AnalyticsStore (analytics.py) is this, limits and alarms
    rollups.refresh()                    # fold new inspections into rollups
    rows = rollups.rates(since, until, by=Grouping.SHIFT, shifts=plant)

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
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, timedelta
from enum import StrEnum
from typing import Any

from sqlalchemy import BigInteger, cast, delete, func, insert, select
from sqlalchemy.exc import IntegrityError

from inspection.analytics.shifts import ShiftSettings, shift_of, shift_spans
from inspection.errors import ConfigError
from inspection.rules import Verdict
from inspection.store.database import Database
from inspection.store.records import utcnow
from inspection.store.schema import (
    defects,
    inspections,
    reviews,
    rollup_classes,
    rollup_counts,
    station_rules,
)

BUCKET = timedelta(minutes=15)
NO_PRODUCT = ""  # the product key of frames judged without a product (rollups, rates by product)


class Grouping(StrEnum):
    """What a rate table is grouped by."""

    STATION = "station"
    PRODUCT = "product"  # the product judged; NO_PRODUCT ("") for frames judged without one
    CLASS = "class"
    DAY = "day"  # plant-local date
    SHIFT = "shift"  # plant-local date and shift name
    HOUR = "hour"  # UTC hour (charts)



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



def floor_bucket(instant: datetime) -> datetime:
    """The start of the 15-minute bucket holding a naive UTC instant."""
    seconds = int(instant.replace(tzinfo=UTC).timestamp()) // 900 * 900
    return datetime.fromtimestamp(seconds, UTC).replace(tzinfo=None)



class RollupStore:
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



def _is(verdict: Verdict):
    from sqlalchemy import case

    return case((inspections.c.verdict == verdict.value, 1), else_=0)


def day_range(day: date, shifts: ShiftSettings) -> tuple[datetime, datetime]:
    """A plant-local date's span as naive UTC: from its first shift's start to the next day's."""
    from inspection.analytics.shifts import shift_spans

    spans = shift_spans(day, day, shifts)
    return spans[0].start.replace(tzinfo=None), spans[-1].end.replace(tzinfo=None)
