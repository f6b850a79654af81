"""Staff accounts and the review trail, as a specification: passwords are hashed and throttled,
sessions end on sign-out, expiry and disabling; every decision is a new row (nothing is
overwritten), the queue holds exactly the flagged frames nobody has decided yet.

Each test runs on SQLite and, with QC_TEST_POSTGRES_URL set, on PostgreSQL."""

from __future__ import annotations

import time
from datetime import timedelta

import pytest
from sqlalchemy import select

from inspection.errors import ConfigError, Conflict, NotFound
from inspection.roles import Role
from inspection.rules import StationRules, Verdict
from inspection.store.database import Database
from inspection.store.records import InspectionRecord, RecordStore, utcnow
from inspection.store.reviews import (
    BoxCorrection,
    BoxDecision,
    Disposition,
    FrameDecision,
    QueueFilter,
    ReviewState,
    ReviewStore,
)
from inspection.store.schema import users as users_table
from inspection.store.users import FREE_FAILURES, LoginRefused, UserStore

PASSWORD = "line-side-pc-42"
HOURS = timedelta(hours=1)


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db(request, tmp_path):
    url = f"sqlite:///{tmp_path / 'qc.db'}" if request.param == "sqlite" else request.getfixturevalue("postgres_url")
    database = Database(url)
    database.upgrade()
    yield database
    database.dispose()


@pytest.fixture
def users(db) -> UserStore:
    return UserStore(db)


@pytest.fixture
def records(db) -> RecordStore:
    store = RecordStore(db)
    for station in ("st1", "st2"):
        store.add_station(station, rules=StationRules())
    return store


@pytest.fixture
def reviews(db) -> ReviewStore:
    return ReviewStore(db)


def flagged(records: RecordStore, station: str = "st1", verdict: str = "FAIL", *, classes=("short",),
            model_version: str = "v1", part_id: str | None = None) -> InspectionRecord:
    detections = [{"class": name, "class_id": i, "confidence": 0.9, "box": [10.0 + 20 * i, 10.0, 30.0 + 20 * i, 40.0],
                   "area": 600.0} for i, name in enumerate(classes)]
    record = InspectionRecord(station_id=station, verdict=Verdict(verdict), rule="test", model_name="m",
                              model_version=model_version, rules_version=1, width=320, height=240,
                              detections=detections, timings={}, part_id=part_id)
    saved, _ = records.save_inspection(record)
    time.sleep(0.002)  # ids are ordered by millisecond
    return saved


# -- accounts ------------------------------------------------------------------------------


def test_a_user_signs_in_with_the_password_and_it_is_stored_only_as_an_argon2_hash(users, db):
    users.add("kim", password=PASSWORD, role="reviewer", display_name="Kim Jiwoo")
    assert users.authenticate("kim", PASSWORD).display_name == "Kim Jiwoo"
    with db.engine.connect() as conn:
        stored = conn.execute(select(users_table.c.password_hash)).scalar()
    assert stored.startswith("$argon2id$") and PASSWORD not in stored


def test_a_wrong_password_and_an_unknown_name_are_refused_alike(users):
    users.add("kim", password=PASSWORD)
    with pytest.raises(LoginRefused) as wrong_password:
        users.authenticate("kim", "not-the-password")
    with pytest.raises(LoginRefused) as unknown:
        users.authenticate("nobody", PASSWORD)
    assert str(wrong_password.value) == str(unknown.value)


def test_repeated_failures_lock_the_name_even_for_the_right_password(users):
    users.add("kim", password=PASSWORD)
    for _ in range(FREE_FAILURES - 1):
        with pytest.raises(LoginRefused, match="wrong"):
            users.authenticate("kim", "guess-guess-guess")
    with pytest.raises(LoginRefused, match="too many") as locked:
        users.authenticate("kim", "guess-guess-guess")
    assert locked.value.retry_after > 0
    with pytest.raises(LoginRefused, match="too many"):
        users.authenticate("kim", PASSWORD)
    users.set_password("kim", "a-new-password-1")  # an admin lifts the lock
    assert users.authenticate("kim", "a-new-password-1").name == "kim"


def test_people_are_staff_with_sound_names_and_passwords(users):
    with pytest.raises(ConfigError, match="API keys"):
        users.add("cam1", password=PASSWORD, role="station")
    with pytest.raises(ConfigError, match="at least"):
        users.add("kim", password="short")
    with pytest.raises(ConfigError, match="user name"):
        users.add("Kim Jiwoo", password=PASSWORD)
    users.add("kim", password=PASSWORD)
    with pytest.raises(Conflict, match="already exists"):
        users.add("kim", password=PASSWORD)
    with pytest.raises(NotFound):
        users.disable("nobody")


def test_a_session_ends_on_sign_out_on_disabling_and_when_idle_or_expired(users):
    kim = users.add("kim", password=PASSWORD, role=Role.ENGINEER)
    token, session = users.open_session(kim, idle=HOURS, lifetime=HOURS)
    found = users.session(token, idle=HOURS)
    assert found.user.name == "kim" and found.user.role is Role.ENGINEER and found.csrf == session.csrf
    users.close_session(token)
    assert users.session(token, idle=HOURS) is None

    token, _ = users.open_session(kim, idle=HOURS, lifetime=HOURS)
    assert users.session(token, idle=timedelta(0)) is None, "idle longer than allowed"
    token, _ = users.open_session(kim, idle=HOURS, lifetime=timedelta(0))
    assert users.session(token, idle=HOURS) is None, "past its lifetime"

    token, _ = users.open_session(kim, idle=HOURS, lifetime=HOURS)
    users.disable("kim")
    assert users.session(token, idle=HOURS) is None
    with pytest.raises(LoginRefused, match="disabled"):
        users.authenticate("kim", PASSWORD)


# -- the review trail ----------------------------------------------------------------------


def test_a_new_decision_supersedes_the_old_one_and_both_stay_in_the_history(records, reviews):
    frame = flagged(records, classes=("short", "spur"))
    first, _ = reviews.add(frame.id, reviewer="kim", decision=FrameDecision.DEFECT)
    second, _ = reviews.add(frame.id, reviewer="lee", decision=FrameDecision.FALSE_ALARM, note="dust")
    history = reviews.history(frame.id)
    assert [r.id for r in history] == [first.id, second.id]
    assert [(r.reviewer, r.decision) for r in history] == [("kim", FrameDecision.DEFECT),
                                                            ("lee", FrameDecision.FALSE_ALARM)]
    assert history[0].created_at <= history[1].created_at
    assert reviews.latest([frame.id])[frame.id] == second
    assert second.disposition is Disposition.OK_RELEASED and first.disposition is Disposition.NG_CONFIRMED


def test_per_box_corrections_cover_every_detection_in_image_pixels(records, reviews):
    frame = flagged(records, classes=("short", "spur", "open"))
    review, _ = reviews.add(frame.id, reviewer="kim", decision="defect", boxes=[
        BoxCorrection(BoxDecision.FALSE_ALARM, "short", (0, 0, 0, 0), detection=0),
        BoxCorrection(BoxDecision.WRONG_CLASS, "mousebite", (0, 0, 0, 0), detection=1),
        BoxCorrection(BoxDecision.MISSED, "pin-hole", (300.0, 200.0, 400.0, 250.0)),
    ])
    by_decision = {b.decision: b for b in review.boxes}
    assert [b.decision for b in review.boxes] == [BoxDecision.FALSE_ALARM, BoxDecision.WRONG_CLASS,
                                                  BoxDecision.CONFIRMED, BoxDecision.MISSED]
    assert by_decision[BoxDecision.WRONG_CLASS].class_name == "mousebite"
    assert by_decision[BoxDecision.WRONG_CLASS].model_class == "spur"
    assert by_decision[BoxDecision.WRONG_CLASS].xyxy == (30.0, 10.0, 50.0, 40.0), "the model's box, as stored"
    assert by_decision[BoxDecision.MISSED].xyxy == (300.0, 200.0, 320.0, 240.0), "clipped to the 320x240 image"
    assert by_decision[BoxDecision.MISSED].detection is None
    assert reviews.history(frame.id)[-1].boxes == review.boxes


def test_impossible_corrections_are_refused_and_nothing_is_written(records, reviews):
    frame = flagged(records)
    with pytest.raises(ConfigError, match="detection 5"):
        reviews.add(frame.id, reviewer="kim", decision="defect",
                    boxes=[BoxCorrection(BoxDecision.CONFIRMED, "short", (0, 0, 1, 1), detection=5)])
    with pytest.raises(ConfigError, match="false alarm cannot"):
        reviews.add(frame.id, reviewer="kim", decision="false_alarm",
                    boxes=[BoxCorrection(BoxDecision.MISSED, "short", (1, 1, 20, 20))])
    with pytest.raises(ConfigError, match="1 px"):
        reviews.add(frame.id, reviewer="kim", decision="defect",
                    boxes=[BoxCorrection(BoxDecision.MISSED, "short", (500, 500, 600, 600))])
    with pytest.raises(NotFound):
        reviews.add("0" * 32, reviewer="kim", decision="defect")
    assert reviews.history(frame.id) == []


def test_a_retried_decision_with_the_same_client_id_is_stored_once(records, reviews):
    frame = flagged(records)
    first, created = reviews.add(frame.id, reviewer="kim", decision="defect", client_id="page-1")
    again, created_again = reviews.add(frame.id, reviewer="kim", decision="defect", client_id="page-1")
    assert (created, created_again) == (True, False) and again.id == first.id
    assert len(reviews.history(frame.id)) == 1


def test_the_same_decision_again_is_not_a_second_row(records, reviews):
    frame = flagged(records, classes=("short", "spur"))
    first, created = reviews.add(frame.id, reviewer="kim", decision="defect", note="bridge", client_id="a")
    again, created_again = reviews.add(frame.id, reviewer="kim", decision="defect", note="bridge", client_id="b")
    assert (created, created_again) == (True, False) and again == first
    assert len(reviews.history(frame.id)) == 1, "a key pressed twice is one row in the audit trail"
    # What changes something is a row: a new note, another reviewer standing by the decision.
    reviews.add(frame.id, reviewer="kim", decision="defect", note="bridge, left edge")
    reviews.add(frame.id, reviewer="lee", decision="defect", note="bridge, left edge")
    assert [(r.reviewer, r.note) for r in reviews.history(frame.id)] == [
        ("kim", "bridge"), ("kim", "bridge, left edge"), ("lee", "bridge, left edge")]


def test_one_box_corrected_leaves_the_other_boxes_undecided(records, reviews):
    frame = flagged(records, classes=("short", "spur", "mousebite"))
    undecided = [BoxCorrection(BoxDecision.UNDECIDED, name, (0, 0, 0, 0), detection=i)
                 for i, name in ((1, "spur"), (2, "mousebite"))]
    review, _ = reviews.add(frame.id, reviewer="kim", decision="defect", boxes=[
        BoxCorrection(BoxDecision.FALSE_ALARM, "short", (0, 0, 0, 0), detection=0), *undecided])
    assert [b.decision for b in review.boxes] == [BoxDecision.FALSE_ALARM, BoxDecision.UNDECIDED,
                                                  BoxDecision.UNDECIDED]
    assert [b.is_defect for b in review.boxes] == [False, True, True], "the model's box stands until decided"
    # D then decides the rest: a new row, the undecided boxes confirmed, the correction kept.
    decided, created = reviews.add(frame.id, reviewer="kim", decision="defect", boxes=[
        BoxCorrection(BoxDecision.FALSE_ALARM, "short", (0, 0, 0, 0), detection=0)])
    assert created and [b.decision for b in decided.boxes] == [BoxDecision.FALSE_ALARM, BoxDecision.CONFIRMED,
                                                               BoxDecision.CONFIRMED]
    # A false alarm decides every box, whatever was left undecided.
    rejected, _ = reviews.add(frame.id, reviewer="kim", decision="false_alarm", boxes=undecided)
    assert {b.decision for b in rejected.boxes} == {BoxDecision.FALSE_ALARM}
    assert len(reviews.history(frame.id)) == 3


def test_the_queue_holds_unreviewed_flagged_frames_newest_first_and_retracting_returns_one(records, reviews):
    passed = flagged(records, verdict="PASS")
    old, middle, new = flagged(records), flagged(records, verdict="REVIEW"), flagged(records)
    items, _ = reviews.queue(QueueFilter())
    assert [i.inspection.id for i in items] == [new.id, middle.id, old.id]
    assert passed.id not in {i.inspection.id for i in items}
    reviews.add(middle.id, reviewer="kim", decision="false_alarm")
    assert reviews.count(QueueFilter()) == 2
    assert reviews.count(QueueFilter(state=ReviewState.REVIEWED)) == 1
    items, _ = reviews.queue(QueueFilter(oldest_first=True))
    assert [i.inspection.id for i in items] == [old.id, new.id]
    reviews.add(middle.id, reviewer="kim", decision="retracted")  # undo
    assert reviews.count(QueueFilter()) == 3


def test_every_filter_narrows_the_queue(records, reviews):
    a = flagged(records, "st1", "FAIL", classes=("short",), model_version="v1", part_id="P-1")
    b = flagged(records, "st2", "REVIEW", classes=("spur",), model_version="v2", part_id="P-2")
    def ids(where: QueueFilter) -> list[str]:
        return [i.inspection.id for i in reviews.queue(where)[0]]

    assert ids(QueueFilter(station="st2")) == [b.id]
    assert ids(QueueFilter(verdict=Verdict.FAIL)) == [a.id]
    assert ids(QueueFilter(class_name="short")) == [a.id]
    assert ids(QueueFilter(model_version="v2")) == [b.id]
    assert ids(QueueFilter(part_id="P-1")) == [a.id]
    assert ids(QueueFilter(since=b.created_at)) == [b.id]
    assert ids(QueueFilter(until=b.created_at)) == [a.id]
    page, cursor = reviews.queue(QueueFilter(), limit=1)
    assert [i.inspection.id for i in page] == [b.id] and cursor == b.id
    assert [i.inspection.id for i in reviews.queue(QueueFilter(), cursor=cursor)[0]] == [a.id]
    assert reviews.backlog() == {"st1": 1, "st2": 1}


def test_a_bulk_decision_covers_exactly_the_selection_the_reviewer_saw(records, reviews):
    mine = [flagged(records, "st1", "REVIEW") for _ in range(3)]
    other = flagged(records, "st2", "REVIEW")
    where = QueueFilter(station="st1", verdict=Verdict.REVIEW)
    with pytest.raises(Conflict, match="holds 3 frames, not 2"):
        reviews.bulk(where, expected=2, reviewer="kim", decision="false_alarm")
    assert reviews.count(where) == 3, "nothing written"
    made = reviews.bulk(where, expected=3, reviewer="kim", decision="false_alarm", note="camera dust")
    assert sorted(r.inspection_id for r in made) == sorted(f.id for f in mine)
    assert all(r.note == "camera dust" and r.disposition is Disposition.OK_RELEASED for r in made)
    assert reviews.count(where) == 0 and reviews.count(QueueFilter()) == 1
    assert reviews.latest([other.id]) == {}


def test_the_latest_review_is_read_back_with_its_verdict_time(records, reviews):
    frame = flagged(records)
    review, _ = reviews.add(frame.id, reviewer="kim", decision="defect")
    assert review.verdict_at == frame.created_at and review.created_at >= frame.created_at
    assert review.model_verdict is Verdict.FAIL
    assert review.created_at <= utcnow()
