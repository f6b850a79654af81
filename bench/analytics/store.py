"""The dashboard's queries over one million inspections, on SQLite and PostgreSQL: counting the
raw records against reading the 15-minute rollups (inspection/store/rollups.py).

    python -m bench.analytics.store                       # SQLite in a temporary folder, 1M rows
    python -m bench.analytics.store --postgres postgresql://qc:qc@127.0.0.1:5432/qc
    python -m bench.analytics.store --rows 100000 --no-write

Synthetic line (seed below): 10 stations over 30 days, inspections evenly spread, 2% FAIL
each with one or two boxes of 6 classes; each station changes over between 3 products every
8 hours (the rollups count per product too, and the summary's rates by product read them).
Timed (medians of 3 runs): the raw GROUP BY of defect rate per station and day over the 30
days; `AnalyticsStore.summary` over the 30 days (rates by station, product, class, plant day
and shift, Pareto, versions, review backlog and alarms) and over one day; one `refresh` after
a minute of new inspections; and the one-off `rebuild` of every bucket (what an upgraded
database does once).
"""

from __future__ import annotations

import argparse
import secrets
import statistics
import tempfile
import time
from datetime import datetime, timedelta

import numpy as np

SEED = 20261201
STATIONS = 10
DAYS = 30
CLASSES = ("short", "open", "spur", "mousebite", "pinhole", "copper")
PRODUCTS = ("m8-bolt", "m10-bolt", "m12-bolt")


def fill(db, rows: int, seed: int) -> datetime:
    from inspection.rules import StationRules
    from inspection.store.records import RecordStore
    from inspection.store.schema import defects, inspections

    records = RecordStore(db)
    for s in range(STATIONS):
        records.add_station(f"line{s}", rules=StationRules())
    rng = np.random.default_rng(seed)
    start = datetime(2026, 3, 1)
    step = timedelta(days=DAYS) / rows
    chunk = 20000
    for first in range(0, rows, chunk):
        batch, boxes = [], []
        count = min(chunk, rows - first)
        failed = rng.random(count) < 0.02
        stations = rng.integers(0, STATIONS, count)
        for i in range(count):
            ident = f"{first + i:012x}{secrets.token_hex(10)}"
            when = start + (first + i) * step
            product = PRODUCTS[(int((when - start).total_seconds()) // (8 * 3600) + int(stations[i])) % 3]
            batch.append({"id": ident, "station_id": f"line{stations[i]}", "created_at": when,
                          "product": product, "product_version": 1,
                          "verdict": "FAIL" if failed[i] else "PASS", "rule": "bench", "model_name": "m",
                          "model_version": "v1" if first + i < rows // 2 else "v2", "rules_version": 1,
                          "width": 640, "height": 640, "detections": [], "timings": {},
                          "brightness": 120.0, "contrast": 40.0, "sharpness": 300.0, "blue": 110.0,
                          "green": 120.0, "red": 130.0, "max_confidence": 0.5})
            if failed[i]:
                boxes.extend({"inspection_id": ident, "class_name": CLASSES[int(rng.integers(0, 6))],
                              "confidence": 0.8} for _ in range(int(rng.integers(1, 3))))
        with db.engine.begin() as conn:
            conn.execute(inspections.insert(), batch)
            if boxes:
                conn.execute(defects.insert(), boxes)
    return start


def timed(job, repeats: int = 3) -> float:
    runs = []
    for _ in range(repeats):
        began = time.perf_counter()
        job()
        runs.append(time.perf_counter() - began)
    return statistics.median(runs) * 1000


def measure(url: str, rows: int, seed: int) -> dict[str, float]:
    from sqlalchemy import case, func, select

    from inspection.analytics.shifts import ShiftSettings
    from inspection.store.analytics import AnalyticsStore
    from inspection.store.database import Database
    from inspection.store.schema import inspections

    db = Database(url)
    db.upgrade()
    began = time.perf_counter()
    start = fill(db, rows, seed)
    fill_s = time.perf_counter() - began
    analytics = AnalyticsStore(db)
    plant = ShiftSettings.equal("Asia/Seoul", first_start="06:00")
    end = start + timedelta(days=DAYS)
    day = func.date(inspections.c.created_at)
    failed = case((inspections.c.verdict == "FAIL", 1), else_=0)
    raw = (select(inspections.c.station_id, day, func.count(), func.sum(failed))
           .where(inspections.c.created_at >= start, inspections.c.created_at < end)
           .group_by(inspections.c.station_id, day))

    def raw_query():
        with db.engine.connect() as conn:
            conn.execute(raw).all()

    figures = {"fill_s": fill_s, "raw_ms": timed(raw_query)}
    began = time.perf_counter()
    analytics.rebuild(start)
    figures["rebuild_ms"] = (time.perf_counter() - began) * 1000
    figures["summary_30d_ms"] = timed(lambda: analytics.summary(start, end, shifts=plant))
    figures["summary_1d_ms"] = timed(lambda: analytics.summary(end - timedelta(days=1), end, shifts=plant))
    figures["refresh_ms"] = timed(lambda: analytics.refresh(now=end))
    db.dispose()
    return figures


def main() -> None:
    from bench.report import write_section

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--postgres", default="", help="also measure on this PostgreSQL (a fresh schema)")
    parser.add_argument("--seed", type=int, default=SEED)
    parser.add_argument("--no-write", action="store_true")
    args = parser.parse_args()
    results = {}
    with tempfile.TemporaryDirectory() as folder:
        results["SQLite (WAL, synchronous FULL)"] = measure(f"sqlite:///{folder}/bench.db", args.rows, args.seed)
        print(results, flush=True)
    if args.postgres:
        from sqlalchemy import text

        from inspection.store.database import Database
        from tests.conftest import postgres_schema_url

        schema = f"bench_{secrets.token_hex(4)}"
        admin = Database(args.postgres)
        with admin.engine.begin() as conn:
            conn.execute(text(f'CREATE SCHEMA "{schema}"'))
        try:
            results["PostgreSQL 15"] = measure(postgres_schema_url(args.postgres, schema), args.rows, args.seed)
        finally:
            with admin.engine.begin() as conn:
                conn.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
            admin.dispose()
    lines = [("| database | insert (s) | raw GROUP BY station, day over 30 days (ms) | rollup rebuild, once (ms) "
              "| dashboard summary, 30 days (ms) | summary, 1 day (ms) | refresh after new rows (ms) |"),
             "|---|---|---|---|---|---|---|"]
    for name, f in results.items():
        lines.append(f"| {name} | {f['fill_s']:.0f} | {f['raw_ms']:.0f} | {f['rebuild_ms']:.0f} | "
                     f"{f['summary_30d_ms']:.0f} | {f['summary_1d_ms']:.0f} | {f['refresh_ms']:.0f} |")
    body = ("## Plant analytics: dashboard queries over many inspections (bench/analytics/store.py)\n\n"
            f"{args.rows:,} synthetic inspections (seed {args.seed}): {STATIONS} stations over {DAYS} days, 2% FAIL "
            f"with 1-2 boxes of 6 classes, {len(PRODUCTS)} products per station changed over every 8 hours. Medians "
            "of 3 runs. The summary is everything the dashboard and `qc report` read (rates by station, product, "
            "class, plant day and shift, Pareto, version timeline, review backlog, alarms); it reads the 15-minute "
            "rollups, the raw query scans the records.\n\n"
            + "\n".join(lines))
    print(body)
    if not args.no_write:
        write_section("analytics-store", body)


if __name__ == "__main__":
    main()
