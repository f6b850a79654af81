"""Group commit, as a specification: frames judged together are written together (one
transaction, each image folder fsynced once) and answered only after; a frame that fails
inside a group fails alone; durability is what it was (the kill -9 tests in
tests/test_durability.py run unchanged).

The store tests run on SQLite and, when QC_TEST_POSTGRES_URL names a server, on PostgreSQL."""

from __future__ import annotations

import asyncio
import hashlib
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from sqlalchemy import event

from inspection.rules import StationRules
from inspection.store import images as images_module
from inspection.store.database import Database
from inspection.store.images import ImageStore
from inspection.store.records import InspectionRecord, RecordStore
from serving.committer import GroupCommitter, Write


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db(request, tmp_path):
    url = f"sqlite:///{tmp_path / 'qc.db'}" if request.param == "sqlite" else request.getfixturevalue("postgres_url")
    database = Database(url)
    database.upgrade()
    yield database
    database.dispose()


@pytest.fixture
def store(db) -> RecordStore:
    store = RecordStore(db)
    store.add_station("cam1", rules=StationRules())
    store.add_station("cam2", rules=StationRules())
    return store


@pytest.fixture
def commits(db) -> list[int]:
    """One entry per transaction committed on the database from now on."""
    seen: list[int] = []
    event.listen(db.engine, "commit", lambda conn: seen.append(1))
    return seen


def record(station: str = "cam1", *, key: str | None = None, verdict: str = "FAIL",
           classes: tuple[str, ...] = ("open",)) -> InspectionRecord:
    return InspectionRecord(
        station_id=station, verdict=verdict, rule="test", model_name="default", model_version="v1",
        rules_version=1, width=640, height=480, idempotency_key=key, timings={"total_ms": 1.0},
        detections=[{"class": c, "class_id": i, "confidence": 0.9, "box": [0, 0, 9, 9], "area": 81.0}
                    for i, c in enumerate(classes)])


# -- the record store: one transaction per group -------------------------------------------


def test_a_group_of_records_is_committed_in_one_transaction(store, commits):
    group = [record(key=f"k{i}", classes=("open", "short")[: i % 3]) for i in range(12)]
    results = store.save_many(group)
    assert len(commits) == 1
    assert results == [(r, True) for r in group]
    for r in group:
        stored = store.inspection(r.id)
        assert (stored.idempotency_key, stored.detections) == (r.idempotency_key, r.detections)
    assert store.count() == 12


def test_a_retried_key_inside_a_group_gets_the_original_and_the_others_are_committed(store):
    original, _ = store.save_inspection(record(key="frame-7"))
    retry, fresh = record(key="frame-7", verdict="PASS"), record(key="frame-8")
    twice = [record(station="cam2", key="same"), record(station="cam2", key="same")]
    results = store.save_many([retry, fresh, *twice])
    assert (results[0][0].id, results[0][1]) == (original.id, False)
    assert results[1] == (fresh, True)
    assert results[2] == (twice[0], True)
    assert results[3][0].id == twice[0].id and results[3][1] is False
    assert store.count() == 3  # the original, frame-8 and one "same"


def test_a_record_the_database_refuses_fails_alone_inside_its_group(store):
    good, orphan, other = record(key="a"), record(station="nowhere", key="b"), record(station="cam2", key="c")
    results = store.save_many([good, orphan, other])
    assert results[0] == (good, True) and results[2] == (other, True)
    assert isinstance(results[1], Exception)  # no such station: a foreign key
    assert store.count() == 2


# -- the image store: each folder fsynced once per group ------------------------------------


def test_a_group_of_images_is_stored_with_each_folder_fsynced_once(tmp_path, monkeypatch):
    images = ImageStore(tmp_path / "images")
    folders: list[str] = []
    real = images_module.fsync_folder
    monkeypatch.setattr(images_module, "fsync_folder", lambda f: (folders.append(str(f)), real(f)))
    frames = [bytes([i]) * 100 for i in range(6)]
    items = [(data, "jpeg") for data in frames] * 2  # every frame twice in the group
    shas = images.put_many(items)
    assert shas == [hashlib.sha256(d).hexdigest() for d in frames] * 2
    for sha, data in zip(shas[: len(frames)], frames, strict=True):
        assert images.path(sha).read_bytes() == data
    assert len(folders) == len(set(folders)), "a folder was fsynced twice in one group"
    assert str(tmp_path / "images") in folders  # the root gained the new <ab> folders
    assert not list((tmp_path / "images").rglob(".incoming-*"))
    folders.clear()
    assert images.put_many(items[:3]) == shas[:3] and folders == []  # stored already: nothing to do


def test_an_image_that_cannot_be_stored_fails_alone(tmp_path):
    images = ImageStore(tmp_path / "images")
    good, bad = b"good frame", b"bad frame"
    bad_sha = hashlib.sha256(bad).hexdigest()
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / bad_sha[:2]).write_text("a file where its folder should be")
    result = images.put_many([(good, "jpeg"), (bad, "png")])
    assert result[0] == hashlib.sha256(good).hexdigest() and images.path(result[0]).read_bytes() == good
    assert isinstance(result[1], OSError)


# -- the committer ---------------------------------------------------------------------------


def run(coroutine):
    return asyncio.run(coroutine)


async def committed(committer: GroupCommitter, jobs) -> list:
    await committer.start()
    try:
        return await asyncio.gather(*(committer.submit(job) for job in jobs), return_exceptions=True)
    finally:
        await committer.close()


def test_frames_handed_over_together_are_one_group_one_transaction(store, commits, tmp_path):
    committer = GroupCommitter(store=store, images=ImageStore(tmp_path / "images"))
    group = [record(key=f"f{i}") for i in range(8)]
    results = run(committed(committer, [
        (lambda r=r, i=i: (Write(r, f"image {i}".encode(), "jpeg"), i)) for i, r in enumerate(group)]))
    assert [extra for _, extra in results] == list(range(8))  # each caller gets its own job's value
    assert {(w.group_size, w.created) for w, _ in results} == {(8, True)}
    assert len(commits) == 1
    for (written, _), r in zip(results, group, strict=True):
        assert store.inspection(r.id).image_sha256 == written.record.image_sha256 is not None


def test_a_frame_that_fails_inside_a_group_fails_alone(store, tmp_path):
    images = ImageStore(tmp_path / "images")
    unwritable = b"unwritable image"
    (tmp_path / "images").mkdir()
    (tmp_path / "images" / hashlib.sha256(unwritable).hexdigest()[:2]).write_text("not a folder")
    ok, orphan, no_image = record(key="ok"), record(station="nowhere"), record(key="img")

    def broken():
        raise ValueError("post-processing failed on this frame")

    results = run(committed(GroupCommitter(store=store, images=images), [
        lambda: (Write(ok, b"fine", "jpeg"), None),
        broken,
        lambda: (Write(orphan), None),
        lambda: (Write(no_image, unwritable, "jpeg"), None),
    ]))
    assert results[0][0].record.id == ok.id and results[0][0].created
    assert isinstance(results[1], ValueError)
    assert isinstance(results[2], Exception)  # refused by the database
    assert isinstance(results[3], OSError)  # its image could not be stored ...
    assert store.count() == 1  # ... so its record, which would name it, was not committed


def test_nothing_is_answered_before_its_group_is_committed(store, tmp_path, monkeypatch):
    real = store.save_many
    finished: list[float] = []

    def slow_save(records):
        time.sleep(0.3)
        saved = real(records)
        finished.append(time.monotonic())
        return saved

    monkeypatch.setattr(store, "save_many", slow_save)

    async def scenario():
        committer = GroupCommitter(store=store, images=ImageStore(tmp_path / "images"))
        await committer.start()
        try:
            await committer.submit(lambda: (Write(record()), None))
            return time.monotonic()
        finally:
            await committer.close()

    answered = run(scenario())
    assert finished and answered >= finished[0]


def test_frames_arriving_while_a_group_is_written_form_the_next_group(store, tmp_path, monkeypatch):
    real = store.save_many
    sizes: list[int] = []

    def slow_save(records):
        sizes.append(len(records))
        time.sleep(0.2)  # an fsync that takes its time: the next frames pile up meanwhile
        return real(records)

    monkeypatch.setattr(store, "save_many", slow_save)

    async def scenario():
        committer = GroupCommitter(store=store, images=ImageStore(tmp_path / "images"))
        await committer.start()
        try:
            first = asyncio.create_task(committer.submit(lambda: (Write(record()), None)))
            await asyncio.sleep(0.05)  # the first group is being written
            later = [committer.submit(lambda: (Write(record()), None)) for _ in range(5)]
            return [await first, *await asyncio.gather(*later)]
        finally:
            await committer.close()

    results = run(scenario())
    assert sizes == [1, 5]
    assert [w.group_size for w, _ in results] == [1, 5, 5, 5, 5, 5]


def test_commit_wait_lets_a_groups_first_frame_wait_for_company(store, tmp_path):
    async def scenario():
        committer = GroupCommitter(store=store, images=ImageStore(tmp_path / "images"), max_wait_ms=300)
        await committer.start()
        try:
            async def late(delay: float):
                await asyncio.sleep(delay)
                return await committer.submit(lambda: (Write(record()), None))

            return await asyncio.gather(late(0), late(0.05), late(0.1))
        finally:
            await committer.close()

    assert [w.group_size for w, _ in run(scenario())] == [3, 3, 3]


def test_a_caller_that_stops_waiting_still_has_its_frame_written(store, tmp_path):
    keep = record(key="gone-away")

    async def scenario():
        committer = GroupCommitter(store=store, images=ImageStore(tmp_path / "images"))
        await committer.start()
        try:
            waiting = asyncio.create_task(committer.submit(lambda: (Write(keep), None)))
            await asyncio.sleep(0)
            waiting.cancel()  # the client disconnected
            await asyncio.gather(waiting, return_exceptions=True)
        finally:
            await committer.close()  # writes what was handed over

    run(scenario())
    assert store.find_by_key("cam1", "gone-away").id == keep.id


# -- the service -----------------------------------------------------------------------------


def test_concurrent_frames_of_one_batch_are_committed_together_and_all_recorded(untrained_model, tmp_path):
    from tests.service_harness import FAIL_ALL, frame, running

    with running(tmp_path / "home", untrained_model, max_wait_ms=250, max_batch=8) as service:
        station = service.add_station(FAIL_ALL)
        with ThreadPoolExecutor(8) as pool:
            responses = list(pool.map(
                lambda i: service.inspect(station, frame(seed=300 + i), headers={"Idempotency-Key": f"k{i}"}),
                range(8)))
        assert {r.status_code for r in responses} == {200}
        timings = [r.json()["timings"] for r in responses]
        assert max(t["group_size"] for t in timings) > 1
        assert all(t["store_ms"] <= t["total_ms"] for t in timings)
        records = service.records(station)
        assert len(records) == 8 and all(r.image_sha256 for r in records)  # FAIL images always kept
        metrics = service.client.get("/metrics", headers=service.admin).text
        assert "qc_commit_group_size_count" in metrics
