"""What power-loss durability costs per frame: the fsyncs before an answer, timed.

    .venv/bin/python bench/durability/run.py [--frames 200] [--postgres postgresql://...]

Per frame the service (1) writes the image durably when it stores one (temp file, fsync,
rename, fsync of the folder: inspection/durable.py) and (2) commits the record (SQLite WAL
with synchronous=FULL: one fdatasync; PostgreSQL: the server's WAL flush before it
acknowledges COMMIT). This times both as the service runs them, and again with the syncs off
(os.fsync a no-op; synchronous=OFF; synchronous_commit=off), on the disk under a temporary
folder. The difference is what durability costs. tests/test_power_loss.py proves the syncs
happen before the answer.

Writes the `durability` section of BENCHMARKS.md (unless --dry-run).
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from unittest import mock

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench.report import table, write_section


def _record(i: int):
    from inspection.store.records import InspectionRecord

    return InspectionRecord(station_id="bench", verdict="FAIL", rule="bench", model_name="m", model_version="v1",
                            rules_version=1, width=640, height=640, detections=[], timings={},
                            idempotency_key=f"k{i}-{time.time_ns()}", image_format="jpeg")


def time_images(folder: Path, frames: list[bytes], *, synced: bool) -> float:
    from inspection.store.images import ImageStore

    store = ImageStore(folder)
    started = time.perf_counter()
    with mock.patch("os.fsync") if not synced else _nothing():
        for data in frames:
            store.put(data, "jpeg")
    return (time.perf_counter() - started) / len(frames) * 1000


class _nothing:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def time_commits(url: str, n: int, *, synced: bool) -> float:
    from sqlalchemy import event

    from inspection.errors import Conflict
    from inspection.rules import StationRules
    from inspection.store.database import Database
    from inspection.store.records import RecordStore

    db = Database(url)
    if not synced:
        statement = "PRAGMA synchronous=OFF" if db.is_sqlite else "SET synchronous_commit=off"

        def relax(dbapi_connection, _record) -> None:
            cursor = dbapi_connection.cursor()
            cursor.execute(statement)
            cursor.close()
            if not db.is_sqlite:
                dbapi_connection.commit()

        event.listen(db.engine, "connect", relax)
    db.upgrade()
    store = RecordStore(db)
    with contextlib.suppress(Conflict):  # the station of an earlier round
        store.add_station("bench", rules=StationRules())
    store.save_inspection(_record(-1))  # warm: connection opened
    started = time.perf_counter()
    for i in range(n):
        store.save_inspection(_record(i))
    elapsed = (time.perf_counter() - started) / n * 1000
    db.dispose()
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--frames", type=int, default=200)
    parser.add_argument("--postgres", default=os.environ.get("QC_TEST_POSTGRES_URL", ""),
                        help="a PostgreSQL URL whose database may get qc's tables (a fresh schema is used)")
    parser.add_argument("--dry-run", action="store_true")
    args = parser.parse_args()
    import numpy as np

    rng = np.random.default_rng(0)
    frames = [rng.bytes(100_000) for _ in range(args.frames)]  # a 640x640 JPEG is ~100 KB
    rows = []
    with tempfile.TemporaryDirectory(dir=os.environ.get("QC_HOME") or None) as scratch_dir:
        scratch = Path(scratch_dir)
        synced = statistics.median(time_images(scratch / f"a{i}", frames, synced=True) for i in range(3))
        loose = statistics.median(time_images(scratch / f"b{i}", frames, synced=False) for i in range(3))
        rows.append(["image file (100 KB): temp, fsync, rename, fsync folder", f"{synced:.2f}", f"{loose:.2f}",
                     f"{synced - loose:.2f}"])
        for label, make in (("record, SQLite WAL (synchronous FULL vs OFF)",
                             lambda tag: f"sqlite:///{scratch / f'{tag}.db'}"),
                            ("record, PostgreSQL (synchronous_commit on vs off)",
                             (lambda tag: _pg_schema(args.postgres, tag)) if args.postgres else None)):
            if make is None:
                continue
            on = time_commits(make("on"), args.frames, synced=True)
            off = time_commits(make("off"), args.frames, synced=False)
            rows.append([label, f"{on:.2f}", f"{off:.2f}", f"{on - off:.2f}"])
    body = "\n".join([
        "## Durability: what the syncs before each answer cost (bench/durability/run.py)",
        "",
        (f"Per frame, median of 3 runs of {args.frames}: the image write and the record commit as the "
         "service does them, and with the syncs off. A FAIL/REVIEW frame pays both; a PASS frame "
         "whose image is not sampled pays the commit only. Disk: ext4 on the VM's virtio disk (/tmp); "
         "PostgreSQL 15 on the same machine."),
        "",
        table(["step", "durable ms", "syncs off ms", "cost of durability ms"], rows),
    ])
    print(body)
    if not args.dry_run:
        write_section("durability", body)


_SCHEMAS: list[tuple[str, str]] = []


def _drop_schemas() -> None:
    from sqlalchemy import text

    from inspection.store.database import Database

    for base, schema in _SCHEMAS:
        admin = Database(base)
        with admin.engine.begin() as conn:
            conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        admin.dispose()


def _pg_schema(base: str, tag: str) -> str:
    from sqlalchemy import text

    from inspection.store.database import Database
    from tests.conftest import postgres_schema_url

    schema = f"qc_bench_{tag}_{os.getpid()}"
    _SCHEMAS.append((base, schema))
    admin = Database(base)
    with admin.engine.begin() as conn:
        conn.execute(text(f'DROP SCHEMA IF EXISTS "{schema}" CASCADE'))
        conn.execute(text(f'CREATE SCHEMA "{schema}"'))
    admin.dispose()
    return postgres_schema_url(base, schema)


if __name__ == "__main__":
    try:
        main()
    finally:
        _drop_schemas()
