"""What group commit saves: records (and FAIL images) written one transaction each, against
groups of 4, 8 and 16, on SQLite (WAL, synchronous=FULL) and PostgreSQL.

    .venv/bin/python bench/serving/commit.py [--postgres postgresql://qc:qc@127.0.0.1:5432/qc] [--records 400]

The records are shaped like the service's (two detections each) and each comes with a
distinct 60 kB image, stored as a FAIL frame's would be; SQLite and the images live in a
temporary folder (the system's; on these machines the same ext4 disk as the repository). PostgreSQL runs in a schema of
its own, dropped afterwards. Wall and CPU (this process's) milliseconds per record, medians
of `--rounds`. Writes the `commit` section of BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import os
import secrets
import shutil
import sys
import tempfile
import time
from pathlib import Path
from urllib.parse import quote

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench.report import table, write_section
from inspection.rules import StationRules
from inspection.store.database import Database
from inspection.store.images import ImageStore
from inspection.store.records import InspectionRecord, RecordStore

GROUPS = (1, 4, 8, 16)


def record(i: int) -> InspectionRecord:
    return InspectionRecord(
        station_id="bench", verdict="FAIL", rule="open: 1 at or above fail_conf 0.5", model_name="default",
        model_version="v1", rules_version=1, width=640, height=640, idempotency_key=f"k{i}-{secrets.token_hex(4)}",
        timings={"decode_ms": 1.0, "inference_ms": 17.0}, image_format="jpeg",
        detections=[{"class": c, "class_id": n, "confidence": 0.8, "box": [1, 2, 30, 40], "area": 1131.0}
                    for n, c in enumerate(("open", "short"))])


def measure(store: RecordStore, images: ImageStore | None, *, records: int, group: int) -> tuple[float, float]:
    """(wall ms, CPU ms) per record, writing `records` in groups of `group`."""
    batch = [record(i) for i in range(records)]
    payloads = [os.urandom(60_000) for _ in range(records)] if images else []
    began, cpu = time.perf_counter(), time.process_time()
    for start in range(0, records, group):
        part = batch[start : start + group]
        if images:
            shas = images.put_many([(p, "jpeg") for p in payloads[start : start + group]])
            for r, sha in zip(part, shas, strict=True):
                r.image_sha256 = sha
        if group == 1:
            store.save_inspection(part[0])
        else:
            store.save_many(part)
    return ((time.perf_counter() - began) * 1000 / records, (time.process_time() - cpu) * 1000 / records)


def run(url: str, folder: Path, *, records: int, rounds: int, with_images: bool) -> list[tuple[float, float]]:
    db = Database(url)
    db.upgrade()
    store = RecordStore(db)
    store.add_station("bench", rules=StationRules())
    images = ImageStore(folder / "images") if with_images else None
    results = []
    for group in GROUPS:
        runs = sorted(measure(store, images, records=records, group=group) for _ in range(rounds))
        results.append(runs[len(runs) // 2])
    db.dispose()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--postgres", default=os.environ.get("QC_TEST_POSTGRES_URL", ""),
                        help="a PostgreSQL URL (default: QC_TEST_POSTGRES_URL; none: SQLite only)")
    parser.add_argument("--records", type=int, default=320)
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--dry-run", action="store_true", help="print, do not write BENCHMARKS.md")
    args = parser.parse_args()
    folder = Path(tempfile.mkdtemp(prefix="qc-bench-commit-"))
    rows = []
    try:
        for with_images in (False, True):
            label = "records + FAIL images" if with_images else "records"
            sqlite = run(f"sqlite:///{folder / f'qc-{with_images}.db'}", folder, records=args.records,
                         rounds=args.rounds, with_images=with_images)
            rows.append([f"SQLite, {label}", *(f"{w:.2f} / {c:.2f}" for w, c in sqlite)])
            if args.postgres:
                schema = f"qc_bench_{secrets.token_hex(4)}"
                admin = Database(args.postgres)
                with admin.engine.begin() as conn:
                    conn.exec_driver_sql(f'CREATE SCHEMA "{schema}"')
                try:
                    joiner = "&" if "?" in args.postgres else "?"
                    url = f"{args.postgres}{joiner}options={quote(f'-csearch_path={schema}')}"
                    pg = run(url, folder, records=args.records, rounds=args.rounds, with_images=with_images)
                    rows.append([f"PostgreSQL, {label}", *(f"{w:.2f} / {c:.2f}" for w, c in pg)])
                finally:
                    with admin.engine.begin() as conn:
                        conn.exec_driver_sql(f'DROP SCHEMA "{schema}" CASCADE')
                    admin.dispose()
    finally:
        shutil.rmtree(folder, ignore_errors=True)
    postgres = ("as configured by its package (synchronous_commit on, commit_delay 0)" if args.postgres
                else "not measured (no --postgres)")
    body = "\n".join([
        "## Group commit: writing records and images (bench/serving/commit.py)",
        "",
        (f"{args.records} records shaped like the service's (two detections each), written one transaction "
         "per group; with images, each record's distinct 60 kB JPEG-sized file first (`ImageStore.put_many`: "
         "files fsynced, renamed, each folder fsynced once per group). SQLite WAL with synchronous=FULL; "
         f"PostgreSQL {postgres}; "
         f"medians of {args.rounds} rounds. Cells: wall ms / CPU ms of this process per record "
         f"(the database server's own CPU not counted). Load average {os.getloadavg()[0]:.1f} at the end."),
        "",
        table(["store", *(f"group of {g}" for g in GROUPS)], rows),
    ])
    print(body)
    if not args.dry_run:
        write_section("commit", body)


if __name__ == "__main__":
    main()
