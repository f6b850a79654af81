"""The record store, as a specification: verdicts are written once and durably, found again
by every filter, stations keep every rules version, API keys are stored hashed.

Every test that touches the database runs on SQLite and, when QC_TEST_POSTGRES_URL names a
server (e.g. postgresql://qc:qc@127.0.0.1:5432/qc), on PostgreSQL too, each in a schema of
its own that is dropped afterwards."""

from __future__ import annotations

import hashlib
import os
import stat
import threading
from datetime import datetime, timedelta
from pathlib import Path

import pytest
from sqlalchemy import inspect as sa_inspect
from sqlalchemy import select, text

from inspection.errors import ConfigError, Conflict, NotFound
from inspection.rules import StationRules
from inspection.store.database import Database
from inspection.store.images import ImageStore
from inspection.store.keys import KeyStore
from inspection.store.records import InspectionFilter, InspectionRecord, RecordStore
from inspection.store.schema import api_keys, defects, inspections, metadata

POSTGRES_URL = os.environ.get("QC_TEST_POSTGRES_URL", "")


# -- shared fixtures (`db`, the migrated database on SQLite and PostgreSQL, is in conftest) --


@pytest.fixture
def store(db) -> RecordStore:
    return RecordStore(db)


@pytest.fixture
def keys(db) -> KeyStore:
    return KeyStore(db)


def record(station: str = "line1-cam1", *, verdict: str = "PASS", classes: tuple[str, ...] = (),
           rules_version: int = 1, **values) -> InspectionRecord:
    detections = [
        {"class": name, "class_id": i, "confidence": 0.9, "box": [0, 0, 10, 10], "area": 100.0}
        for i, name in enumerate(classes)
    ]
    return InspectionRecord(
        station_id=station, verdict=verdict, rule="test", model_name="default", model_version="v1",
        rules_version=rules_version, width=640, height=480, detections=detections,
        timings={"total_ms": 1.0}, **values,
    )


# -- the database itself -------------------------------------------------------------------


def test_sqlite_runs_in_wal_mode_with_full_fsync(tmp_path):
    db = Database(f"sqlite:///{tmp_path / 'qc.db'}")
    db.upgrade()
    with db.engine.connect() as conn:
        assert conn.execute(text("PRAGMA journal_mode")).scalar() == "wal"
        assert conn.execute(text("PRAGMA synchronous")).scalar() == 2  # FULL
        assert conn.execute(text("PRAGMA foreign_keys")).scalar() == 1
        assert conn.execute(text("PRAGMA busy_timeout")).scalar() >= 1000
    db.dispose()


def test_upgrade_creates_exactly_the_tables_of_the_schema_module(db):
    inspector = sa_inspect(db.engine)
    assert set(inspector.get_table_names()) == set(metadata.tables) | {"alembic_version"}
    for table in metadata.tables.values():
        columns = {c["name"]: c for c in inspector.get_columns(table.name)}
        assert set(columns) == {c.name for c in table.columns}, table.name
        for column in table.columns:
            assert columns[column.name]["nullable"] == column.nullable, f"{table.name}.{column.name}"
        indexes = {tuple(i["column_names"]) for i in inspector.get_indexes(table.name)}
        for index in table.indexes:
            assert tuple(c.name for c in index.columns) in indexes, f"{table.name}: {index.name}"
        uniques = {tuple(u["column_names"]) for u in inspector.get_unique_constraints(table.name)}
        for constraint in table.constraints:
            if constraint.__class__.__name__ == "UniqueConstraint":
                assert tuple(c.name for c in constraint.columns) in uniques, f"{table.name}: {constraint.name}"


def test_the_migrations_and_the_schema_module_agree_column_for_column(db):
    from alembic.autogenerate import compare_metadata
    from alembic.migration import MigrationContext

    with db.engine.connect() as conn:
        context = MigrationContext.configure(conn, opts={"compare_type": True})
        assert compare_metadata(context, metadata) == []


def test_upgrading_twice_changes_nothing_and_reports_the_head_revision(db):
    before = db.tables()
    db.upgrade()
    assert db.tables() == before
    from alembic.script import ScriptDirectory

    assert db.revision() == ScriptDirectory.from_config(db._alembic_config()).get_current_head()


def test_a_reachable_database_answers_ping(db):
    assert db.ping()


def test_an_unusable_database_url_is_a_config_error():
    with pytest.raises(ConfigError, match="cannot be used"):
        Database("nosuchdriver://x")


# -- stations and rules versions -----------------------------------------------------------


def test_a_new_station_starts_at_rules_version_1(store):
    station = store.add_station("line1-cam1", rules=StationRules(), description="first camera")
    assert (station.id, station.rules_version, station.description) == ("line1-cam1", 1, "first camera")
    assert [s.id for s in store.stations()] == ["line1-cam1"]


def test_adding_a_station_twice_is_a_conflict(store):
    store.add_station("line1-cam1", rules=StationRules())
    with pytest.raises(Conflict, match="already exists"):
        store.add_station("line1-cam1", rules=StationRules())


def test_an_unknown_station_is_not_found_and_the_message_says_how_to_add_it(store):
    with pytest.raises(NotFound, match="qc stations add nowhere"):
        store.station("nowhere")
    with pytest.raises(NotFound):
        store.set_rules("nowhere", StationRules())


def test_new_rules_make_a_new_version_and_every_earlier_version_is_kept(store):
    store.add_station("line1-cam1", rules=StationRules(), created_by="k1")
    strict = StationRules.parse({"default": {"fail_conf": 0.3, "review_conf": 0.1}})
    updated = store.set_rules("line1-cam1", strict, created_by="k2")
    assert updated.rules_version == 2 and updated.rules == strict
    history = store.rules_history("line1-cam1")
    assert [h["version"] for h in history] == [1, 2]
    assert StationRules.parse(history[0]["rules"]) == StationRules()
    assert StationRules.parse(history[1]["rules"]) == strict
    assert [h["created_by"] for h in history] == ["k1", "k2"]


def test_records_keep_the_rules_version_that_judged_them(store):
    store.add_station("line1-cam1", rules=StationRules())
    first, _ = store.save_inspection(record(rules_version=1))
    store.set_rules("line1-cam1", StationRules.parse({"default": {"fail_conf": 0.9}}))
    second, _ = store.save_inspection(record(rules_version=2))
    assert store.inspection(first.id).rules_version == 1
    assert store.inspection(second.id).rules_version == 2


def test_concurrent_rules_changes_each_get_their_own_version(store):
    store.add_station("line1-cam1", rules=StationRules())
    errors: list[Exception] = []

    def change(i: int) -> None:
        try:
            store.set_rules("line1-cam1", StationRules.parse({"default": {"min_area": i}}))
        except Exception as error:  # noqa: BLE001 - collected for the assertion
            errors.append(error)

    threads = [threading.Thread(target=change, args=(i,)) for i in range(8)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert errors == []
    assert [h["version"] for h in store.rules_history("line1-cam1")] == list(range(1, 10))
    assert store.station("line1-cam1").rules_version == 9


# -- inspections ---------------------------------------------------------------------------


@pytest.fixture
def two_stations(store) -> RecordStore:
    store.add_station("line1-cam1", rules=StationRules())
    store.add_station("line1-cam2", rules=StationRules())
    return store


def test_a_saved_inspection_reads_back_field_for_field(two_stations):
    original = record(verdict="FAIL", classes=("scratch",), part_id="SN1", idempotency_key="k",
                      image_sha256="ab" * 32, image_format="jpeg", request_id="r1")
    saved, created = two_stations.save_inspection(original)
    assert created
    again = two_stations.inspection(saved.id)
    assert again.to_json() == original.to_json()
    assert two_stations.count() == 1


def test_a_record_carries_one_field_for_each_per_frame_figure_the_table_stores():
    from dataclasses import fields

    from inspection.analytics.image_stats import Statistic
    from inspection.store.schema import FRAME_COLUMNS, inspections

    assert FRAME_COLUMNS[:-1] == tuple(s.value for s in Statistic)  # the statistics, declared once
    assert set(FRAME_COLUMNS) <= {f.name for f in fields(InspectionRecord)} and set(FRAME_COLUMNS) <= set(
        inspections.c.keys())


def test_an_unknown_inspection_is_not_found(two_stations):
    with pytest.raises(NotFound):
        two_stations.inspection("0" * 32)


def test_a_retry_with_the_same_idempotency_key_returns_the_original_record(two_stations):
    first, created = two_stations.save_inspection(record(verdict="FAIL", idempotency_key="frame-1"))
    retry, created_again = two_stations.save_inspection(record(verdict="PASS", idempotency_key="frame-1"))
    assert created and not created_again
    assert retry.id == first.id and retry.verdict == "FAIL"
    assert two_stations.count() == 1
    assert two_stations.find_by_key("line1-cam1", "frame-1").id == first.id


def test_a_blank_idempotency_key_is_no_key(two_stations):
    first, created = two_stations.save_inspection(record(verdict="FAIL", idempotency_key=""))
    second, created_again = two_stations.save_inspection(record(verdict="PASS", idempotency_key=""))
    assert created and created_again
    assert (first.verdict, second.verdict) == ("FAIL", "PASS")
    assert two_stations.count() == 2


def test_a_frames_admission_reads_its_station_and_the_record_already_acknowledged_under_its_key(two_stations):
    first, _ = two_stations.save_inspection(record("line1-cam1", verdict="FAIL", idempotency_key="frame-1"))
    station, done = two_stations.admission("line1-cam1", "frame-1")
    assert station == two_stations.station("line1-cam1") and done.id == first.id
    assert two_stations.admission("line1-cam1", "frame-2")[1] is None
    assert two_stations.admission("line1-cam2", "frame-1")[1] is None  # keys are per station
    assert two_stations.admission("line1-cam1", None) == (station, None)
    with pytest.raises(NotFound, match="qc stations add line9"):
        two_stations.admission("line9", "frame-1")


def test_idempotency_keys_are_per_station(two_stations):
    a, _ = two_stations.save_inspection(record("line1-cam1", idempotency_key="frame-1"))
    b, created = two_stations.save_inspection(record("line1-cam2", idempotency_key="frame-1"))
    assert created and a.id != b.id
    assert two_stations.count() == 2


def test_records_without_an_idempotency_key_are_all_kept(two_stations):
    for _ in range(3):
        two_stations.save_inspection(record())
    assert two_stations.count() == 3


def test_concurrent_posts_with_one_idempotency_key_leave_exactly_one_record(two_stations):
    results: list[tuple[str, bool]] = []
    barrier = threading.Barrier(6)

    def save() -> None:
        candidate = record(idempotency_key="same-frame", classes=("scratch",))
        barrier.wait()
        saved, created = two_stations.save_inspection(candidate)
        results.append((saved.id, created))

    threads = [threading.Thread(target=save) for _ in range(6)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    assert len(results) == 6
    assert len({saved_id for saved_id, _ in results}) == 1
    assert sum(created for _, created in results) == 1
    assert two_stations.count() == 1
    with two_stations.db.engine.connect() as conn:
        assert conn.execute(select(defects.c.id)).all().__len__() == 1  # no orphaned defect rows


def test_a_record_for_an_unknown_station_is_refused(two_stations):
    with pytest.raises(Exception):  # noqa: B017 - the foreign key refuses it, whatever the driver calls it
        two_stations.save_inspection(record("nowhere"))
    assert two_stations.count() == 0


def test_every_counted_defect_is_a_row_for_class_filters(two_stations):
    saved, _ = two_stations.save_inspection(record(verdict="FAIL", classes=("scratch", "dent")))
    with two_stations.db.engine.connect() as conn:
        rows = conn.execute(select(defects.c.class_name).where(defects.c.inspection_id == saved.id)).scalars()
        assert sorted(rows) == ["dent", "scratch"]


@pytest.fixture
def history(two_stations) -> dict[str, InspectionRecord]:
    """Six records over three days on two stations, by name."""
    day = datetime(2026, 3, 1, 12, 0, 0)
    hour = timedelta(hours=1)
    made = {
        "a": record("line1-cam1", verdict="PASS", part_id="SN1", created_at=day),
        "b": record("line1-cam1", verdict="FAIL", classes=("scratch",), part_id="SN2", created_at=day + hour),
        "c": record("line1-cam2", verdict="REVIEW", classes=("dent",), part_id="SN2", created_at=day + 24 * hour),
        "d": record("line1-cam2", verdict="FAIL", classes=("dent", "scratch"), part_id="SN3",
                    created_at=day + 25 * hour),
        "e": record("line1-cam1", verdict="PASS", part_id="SN4", created_at=day + 48 * hour),
        "f": record("line1-cam2", verdict="FAIL", classes=("particle",), part_id="SN4", created_at=day + 49 * hour),
    }
    for item in made.values():
        two_stations.save_inspection(item)
    return made


def found(store: RecordStore, history: dict, **where) -> set[str]:
    ids = {r.id: name for name, r in history.items()}
    records, _ = store.list_inspections(InspectionFilter(**where), limit=100)
    return {ids[r.id] for r in records}


def test_inspections_are_filtered_by_station(two_stations, history):
    assert found(two_stations, history, station="line1-cam1") == {"a", "b", "e"}


def test_inspections_are_filtered_by_verdict(two_stations, history):
    assert found(two_stations, history, verdict="FAIL") == {"b", "d", "f"}
    assert found(two_stations, history, verdict="REVIEW") == {"c"}


def test_inspections_are_filtered_by_defect_class_without_duplicates(two_stations, history):
    assert found(two_stations, history, class_name="scratch") == {"b", "d"}
    records, _ = two_stations.list_inspections(InspectionFilter(class_name="dent"), limit=100)
    assert len(records) == 2


def test_inspections_are_filtered_by_part_id(two_stations, history):
    assert found(two_stations, history, part_id="SN2") == {"b", "c"}


def test_a_time_range_includes_its_start_and_excludes_its_end(two_stations, history):
    start = history["c"].created_at
    end = history["e"].created_at
    assert found(two_stations, history, since=start, until=end) == {"c", "d"}
    assert found(two_stations, history, since=end) == {"e", "f"}
    assert found(two_stations, history, until=start) == {"a", "b"}


def test_filters_combine(two_stations, history):
    assert found(two_stations, history, station="line1-cam2", verdict="FAIL", class_name="dent") == {"d"}
    assert found(two_stations, history, station="line1-cam1", part_id="SN4", verdict="PASS") == {"e"}
    assert found(two_stations, history, station="line1-cam1", class_name="dent") == set()


def test_pages_follow_the_cursor_newest_first_until_it_is_none(two_stations):
    for _ in range(7):
        two_stations.save_inspection(record())
    seen, cursor, pages = [], None, 0
    while True:
        page, cursor = two_stations.list_inspections(InspectionFilter(), limit=3, cursor=cursor)
        seen += [r.id for r in page]
        pages += 1
        if cursor is None:
            break
    assert pages == 3
    assert len(seen) == len(set(seen)) == 7
    assert seen == sorted(seen, reverse=True)


def test_an_exactly_full_last_page_has_no_cursor(two_stations):
    for _ in range(4):
        two_stations.save_inspection(record())
    page, cursor = two_stations.list_inspections(InspectionFilter(), limit=2)
    page, cursor = two_stations.list_inspections(InspectionFilter(), limit=2, cursor=cursor)
    assert len(page) == 2 and cursor is None


def test_the_cursor_keeps_the_filter(two_stations, history):
    page, cursor = two_stations.list_inspections(InspectionFilter(verdict="FAIL"), limit=2)
    rest, end = two_stations.list_inspections(InspectionFilter(verdict="FAIL"), limit=2, cursor=cursor)
    assert end is None
    assert {r.verdict for r in page + rest} == {"FAIL"} and len(page + rest) == 3


def test_a_garbage_cursor_gives_a_page_not_an_error(two_stations, history):
    records, _ = two_stations.list_inspections(InspectionFilter(), cursor="not-a-cursor!")
    assert isinstance(records, list)


def test_ids_sort_by_creation_time():
    first = record()
    later = [record() for _ in range(50)]
    assert all(r.id[:12] >= first.id[:12] for r in later)
    assert len({r.id for r in later}) == 50 and all(len(r.id) == 32 for r in later)


# -- API keys ------------------------------------------------------------------------------


def test_a_station_key_for_a_station_that_does_not_exist_is_refused(keys, two_stations):
    with pytest.raises(NotFound, match="qc stations add line9"):
        keys.create(role="station", stations=["line1-cam1", "line9"])
    assert keys.list() == []


def test_a_station_id_that_cannot_be_a_url_segment_is_refused(store):
    with pytest.raises(ConfigError, match="letters, digits"):
        store.add_station("a b/../c", rules=StationRules())
    assert store.stations() == []


def test_a_created_key_verifies_with_its_role_and_stations(keys, two_stations):
    token = keys.create(role="station", stations=["line1-cam1"], name="camera 1")
    key = keys.verify(token)
    assert (key.role, key.stations, key.name) == ("station", ["line1-cam1"], "camera 1")
    assert token.startswith(f"qc_{key.id}_")


def test_the_plain_key_is_never_stored_only_its_sha256(keys, db):
    token = keys.create(role="admin")
    _, key_id, secret = token.split("_", 2)
    with db.engine.connect() as conn:
        row = conn.execute(select(api_keys).where(api_keys.c.id == key_id)).mappings().one()
        everything = " ".join(str(v) for v in row.values())
    assert secret not in everything and token not in everything
    assert row["secret_hash"] == hashlib.sha256(secret.encode()).hexdigest()


@pytest.mark.parametrize("mangle", [
    lambda t: t[:-1] + ("A" if t[-1] != "A" else "B"),  # wrong secret
    lambda t: "qc_000000000000_" + t.split("_", 2)[2],  # unknown id
    lambda t: t.replace("qc_", "xx_", 1),  # wrong prefix
    lambda t: "qc_only-two-parts",
    lambda t: "",
])
def test_a_wrong_or_malformed_key_is_refused(keys, mangle):
    token = keys.create(role="admin")
    assert keys.verify(mangle(token)) is None


def test_a_revoked_key_is_refused_and_listed_as_revoked(keys):
    token = keys.create(role="engineer")
    key_id = token.split("_")[1]
    keys.revoke(key_id)
    assert keys.verify(token) is None
    listed = {k.id: k for k in keys.list()}
    assert listed[key_id].revoked_at is not None


def test_revoking_an_unknown_key_is_not_found(keys):
    with pytest.raises(NotFound, match="qc keys list"):
        keys.revoke("nosuchkey")


def test_a_station_key_needs_its_stations_and_roles_are_checked(keys):
    with pytest.raises(ConfigError, match="--station"):
        keys.create(role="station")
    with pytest.raises(ConfigError, match="use one of"):
        keys.create(role="superuser")


def test_secrets_with_underscores_still_verify(keys, monkeypatch):
    import inspection.store.keys as module

    monkeypatch.setattr(module.secrets, "token_urlsafe", lambda n: "with_under_scores-and-dashes")
    token = keys.create(role="reviewer")
    assert keys.verify(token).role == "reviewer"


# -- images --------------------------------------------------------------------------------


def test_an_image_is_stored_once_by_its_content_hash(tmp_path):
    images = ImageStore(tmp_path / "images")
    data = b"\xff\xd8fake jpeg\xff\xd9"
    sha = images.put(data, "jpeg")
    assert sha == hashlib.sha256(data).hexdigest()
    assert images.put(data, "jpeg") == sha
    path = images.path(sha)
    assert path.read_bytes() == data and path.suffix == ".jpg"
    assert path.parent == tmp_path / "images" / sha[:2] / sha[2:4]
    assert [p for p in (tmp_path / "images").rglob("*") if p.is_file()] == [path]  # no temp files left


def test_an_unknown_image_is_not_found(tmp_path):
    with pytest.raises(NotFound):
        ImageStore(tmp_path).path("0" * 64)


def test_an_image_and_its_directory_entry_are_fsynced_before_put_returns(tmp_path, monkeypatch):
    # The record that names the image is committed right after put(): the file's bytes and
    # its name in the folder must both survive a power cut by then.
    synced: list[str] = []
    real_fsync = os.fsync

    def spy(fd: int) -> None:
        synced.append("dir" if stat.S_ISDIR(os.fstat(fd).st_mode) else "file")
        real_fsync(fd)

    monkeypatch.setattr(os, "fsync", spy)
    ImageStore(tmp_path / "images").put(b"\x89PNG\r\n\x1a\nfake", "png")
    assert "file" in synced
    assert "dir" in synced
    assert synced.index("file") < len(synced) - 1 - synced[::-1].index("dir")


def test_records_point_only_at_stored_images(two_stations, tmp_path):
    images = ImageStore(tmp_path / "images")
    sha = images.put(b"BMfake bitmap", "bmp")
    saved, _ = two_stations.save_inspection(record(verdict="FAIL", image_sha256=sha, image_format="bmp"))
    assert Path(images.path(two_stations.inspection(saved.id).image_sha256)).is_file()


def test_inspections_table_has_the_idempotency_constraint():
    names = {c.name for c in inspections.constraints}
    assert "uq_inspections_idempotency" in names


# -- the command line's view of the store --------------------------------------------------


def test_an_unreachable_database_is_one_line_naming_the_setting_without_the_password(qc_home, monkeypatch):
    monkeypatch.setenv("QC_DATABASE_URL", "postgresql://qc:secret@127.0.0.1:1/qc")
    with pytest.raises(ConfigError, match="check QC_DATABASE_URL") as refused:
        Database.from_settings(__import__("inspection.settings").settings.Settings())
    assert "secret" not in str(refused.value)


def test_qc_serve_without_a_registered_model_says_how_to_register_one(qc_home):
    from typer.testing import CliRunner

    from qc.cli import app

    result = CliRunner().invoke(app, ["serve"])
    assert result.exit_code != 0
    assert "qc models add model.onnx --name default --promote" in str(result.exception or result.output)
