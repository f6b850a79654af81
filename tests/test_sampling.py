"""The active-learning sampler and the loop's job store, as a specification: a budget per station
and day, every pick with its reasons, reviewer and shadow disagreements first, a reproducible
random share of PASS frames, a new strategy as one class and one line of policy; one loop turn
at a time, an abandoned one taken over."""

from __future__ import annotations

from datetime import timedelta
from typing import ClassVar

import pytest

from inspection.errors import ConfigError, Conflict
from inspection.rules import StationRules, Verdict
from inspection.store.database import Database
from inspection.store.records import InspectionRecord, RecordStore, utcnow
from labeling.sampling.strategies import Candidate, Found, PolicyLine

RULES = StationRules.model_validate({"default": {"fail_conf": 0.5, "review_conf": 0.25}})


@pytest.fixture(params=["sqlite", pytest.param("postgresql", marks=pytest.mark.postgres)])
def db(request, tmp_path):
    url = f"sqlite:///{tmp_path / 'qc.db'}" if request.param == "sqlite" else request.getfixturevalue("postgres_url")
    database = Database(url)
    database.upgrade()
    yield database
    database.dispose()


SHARES = {"anomaly": 0.0, "reviewer_disagreement": 0.25, "shadow_disagreement": 0.25, "review": 0.25, "low_margin": 0.0,
          "rare_class": 0.0, "random_pass": 0.25}
SETTINGS = {"low_margin": {"margin": 0.05}, "rare_class": {"fraction": 0.1}, "random_pass": {"seed": 0}}


def policy(shares=None, **changes):
    """Four frames per station-day; `shares` per strategy, in the shipped order of priority."""
    from labeling.sampling.policy import SamplingPolicy

    lines = [{"use": name, "share": share, **SETTINGS.get(name, {})} for name, share in (shares or SHARES).items()]
    values = {"budget_per_station_day": 4, "window_days": 7, "strategies": lines}
    return SamplingPolicy.model_validate({**values, **changes})


def add(store, station, verdict, confidence=None, cls="dent", when=None):
    detections = [] if confidence is None else [{"class": cls, "class_id": 1, "confidence": confidence,
                                                 "box": [1, 1, 20, 20]}]
    record = InspectionRecord(station_id=station, verdict=verdict, rule="r", model_name="m", model_version="v1",
                              rules_version=1, width=64, height=64, detections=detections, timings={},
                              image_sha256="a" * 64, image_format="png", created_at=when or utcnow())
    store.save_inspection(record)
    return record.id


def test_the_shipped_policy_loads_and_a_policy_missing_a_key_is_refused(tmp_path):
    from labeling.sampling.policy import SamplingPolicy

    shipped = SamplingPolicy.load()
    assert shipped.budget_per_station_day > 0
    assert [s.name for s in shipped.strategies] == list(SHARES)
    partial = tmp_path / "p.yaml"
    partial.write_text("budget_per_station_day: 5\n")
    with pytest.raises(ConfigError, match="window_days: Field required"):
        SamplingPolicy.load(partial)
    with pytest.raises(ValueError, match=r"add up to 1\.25"):
        policy(shares={"reviewer_disagreement": 0.5, "shadow_disagreement": 0.5, "review": 0.25, "low_margin": 0,
                       "rare_class": 0, "random_pass": 0})
    with pytest.raises(ValueError, match="low_margin: margin: Field required"):
        SamplingPolicy.model_validate({"budget_per_station_day": 1, "window_days": 1,
                                       "strategies": [{"use": "low_margin", "share": 0.5}]})
    with pytest.raises(ValueError, match="unknown strategy 'hunch'"):
        policy(shares={"hunch": 0.5})
    with pytest.raises(ValueError, match="review is listed twice"):
        policy(strategies=[{"use": "review", "share": 0.1}, {"use": "review", "share": 0.2}])
    old = tmp_path / "old.yaml"
    old.write_text("budget_per_station_day: 5\nwindow_days: 7\nshares: {review: 1}\n")
    with pytest.raises(ConfigError, match="old form of the policy; list the strategies"):
        SamplingPolicy.load(old)


def test_the_budget_holds_per_station_and_day_and_every_pick_says_why(db):
    from inspection.store.reviews import BoxCorrection, BoxDecision, FrameDecision, ReviewStore
    from labeling.sampling.sampler import sample

    store = RecordStore(db)
    for station in ("a", "b"):
        store.add_station(station, rules=RULES)
    yesterday = utcnow() - timedelta(days=1)
    disputed = add(store, "a", Verdict.FAIL, 0.9)
    ReviewStore(db).add(disputed, reviewer="kim", decision=FrameDecision.FALSE_ALARM,
                        boxes=[BoxCorrection(BoxDecision.FALSE_ALARM, "dent", (1, 1, 20, 20), detection=0)])
    shadowed = add(store, "a", Verdict.PASS)
    store.save_shadow(shadowed, model_name="m", model_version="v2", verdict=Verdict.FAIL,
                      detections=[{"class": "dent", "confidence": 0.7}])
    reviews = [add(store, "a", Verdict.REVIEW, 0.3) for _ in range(3)]
    passes = [add(store, "a", Verdict.PASS) for _ in range(6)]
    old_day = [add(store, "a", Verdict.REVIEW, 0.3, when=yesterday) for _ in range(5)]
    other_station = [add(store, "b", Verdict.REVIEW, 0.3) for _ in range(5)]

    picks = sample(db, policy())
    by_group = {}
    for pick in picks:
        by_group.setdefault((pick.station, pick.day), []).append(pick)
    assert all(len(group) <= 4 for group in by_group.values()) and len(by_group) == 3
    today = by_group[("a", utcnow().date().isoformat())]
    first = {p.inspection_id: p.reasons[0]["reason"] for p in today}
    assert first[disputed] == "reviewer_disagreement" and first[shadowed] == "shadow_disagreement"
    assert sum(r == "review" for r in first.values()) == 1 and sum(r == "random_pass" for r in first.values()) == 1
    assert next(p for p in today if p.inspection_id == disputed).reasons[0]["decision"] == "false_alarm"
    assert all(p.reasons for p in picks)
    assert len(by_group[("a", yesterday.date().isoformat())]) == 4 and len(by_group[("b", today[0].day)]) == 4
    assert set(reviews + passes + old_day + other_station) >= {p.inspection_id for p in picks} - {disputed, shadowed}

    again = sample(db, policy())
    assert [p.inspection_id for p in again] == [p.inspection_id for p in picks]  # reproducible
    excluded = sample(db, policy(), exclude=[p.inspection_id for p in picks])
    assert not {p.inspection_id for p in excluded} & {p.inspection_id for p in picks}


def test_low_margin_and_rare_classes_are_found_with_their_figures(db, tmp_path):
    from labeling.sampling.sampler import class_shares, sample

    store = RecordStore(db)
    store.add_station("a", rules=RULES)
    near = add(store, "a", Verdict.FAIL, 0.52)
    far = add(store, "a", Verdict.FAIL, 0.95)
    rare = add(store, "a", Verdict.FAIL, 0.95, cls="crack")
    shares = class_shares(["1 0.5 0.5 0.1 0.1\n" * 19 + "2 0.5 0.5 0.1 0.1\n"], {1: "dent", 2: "crack"})
    assert shares == {"dent": 0.95, "crack": 0.05}

    class Training:  # a DatasetVersion's two members the sampler reads
        names: ClassVar = {1: "dent", 2: "crack"}
        entries: ClassVar = [{"label": "x"}]

        @staticmethod
        def label_text(entry):
            return "1 0.5 0.5 0.1 0.1\n" * 19 + "2 0.5 0.5 0.1 0.1\n"

    picks = {p.inspection_id: p for p in sample(db, policy(shares={
        "reviewer_disagreement": 0, "shadow_disagreement": 0, "review": 0, "low_margin": 0.5, "rare_class": 0.5,
        "random_pass": 0}), training=Training())}
    assert picks[near].reasons[0] == {"reason": "low_margin", "margin": 0.02, "class": "dent", "confidence": 0.52}
    assert picks[rare].reasons[0]["reason"] == "rare_class" and picks[rare].reasons[0]["classes"] == ["crack"]
    assert far not in picks


class NightShift(PolicyLine):
    """A strategy written for the test below: frames recorded between 22:00 and 06:00 UTC."""

    name: ClassVar[str] = "night_shift"
    until_hour: int

    def found(self, candidate: Candidate) -> Found | None:
        hour = candidate.record.created_at.hour
        return Found({"hour": hour}) if hour >= 22 or hour < self.until_hour else None


def test_a_new_strategy_is_one_class_and_one_line_of_policy(db, tmp_path):
    from labeling.sampling.policy import SamplingPolicy, policy_path
    from labeling.sampling.sampler import sample

    store = RecordStore(db)
    store.add_station("a", rules=RULES)
    midnight = utcnow().replace(hour=0, minute=30) - timedelta(days=1)
    night = [add(store, "a", Verdict.FAIL, 0.95, when=midnight + timedelta(minutes=i)) for i in range(3)]
    day = [add(store, "a", Verdict.FAIL, 0.95, when=midnight.replace(hour=12) + timedelta(minutes=i))
           for i in range(3)]
    mine = tmp_path / "policy.yaml"
    mine.write_text(policy_path().read_text().replace(  # the shipped policy, with one line more
        "strategies:\n", "strategies:\n  - {use: \"tests.test_sampling:NightShift\", share: 0, until_hour: 6}\n"))

    loaded = SamplingPolicy.load(mine)
    assert [s.name for s in loaded.strategies] == ["night_shift", *SHARES]  # first: the top priority
    picks = {p.inspection_id: p for p in sample(db, loaded)}
    assert set(night) <= set(picks) and not set(day) & set(picks)  # confident FAILs: no shipped reason
    assert picks[night[0]].reasons == [{"reason": "night_shift", "hour": 0}]


def test_one_loop_turn_at_a_time_and_an_abandoned_one_is_taken_over(db):
    from sqlalchemy import update

    from inspection.store.jobs import JobState, JobStore
    from inspection.store.schema import jobs as table

    jobs = JobStore(db)
    job = jobs.start("loop", params={})
    with pytest.raises(Conflict, match="already running"):
        jobs.start("loop", params={})
    jobs.progress(job.id, step="train", message="epoch 1", outputs={"run": "runs/x"})
    with db.engine.begin() as conn:  # its process died: no heartbeat for long
        conn.execute(update(table).where(table.c.id == job.id).values(heartbeat_at=utcnow() - timedelta(hours=1)))
    resumed = jobs.start("loop", params={})
    assert resumed.id == job.id and resumed.done("train") == {"run": "runs/x"}
    finished = jobs.finish(job.id, JobState.WAITING, result={"candidate": "m@v2"})
    assert finished.state is JobState.WAITING and jobs.active("loop") is None
    assert jobs.start("loop", params={}).id != job.id


def test_a_job_the_service_made_is_adopted_by_its_worker_and_an_ended_one_is_not(db):
    from inspection.errors import NotFound
    from inspection.store.jobs import JobKind, JobState, JobStore

    jobs = JobStore(db)
    job = jobs.start(JobKind.LOOP, params={"asked": {"min_new": 5}, "via": "api"}, created_by="key:abc")
    worked = jobs.adopt(job.id, params={"min_new": 5, "recipe": "r.yaml"})
    assert worked.params == {"asked": {"min_new": 5}, "via": "api", "min_new": 5, "recipe": "r.yaml"}
    assert worked.created_by == "key:abc" and jobs.alive(worked)
    with pytest.raises(Conflict, match="already running"):
        jobs.start(JobKind.LOOP, params={})
    jobs.finish(job.id, JobState.SKIPPED, result={"message": "nothing new"})
    assert not jobs.alive(jobs.get(job.id))
    with pytest.raises(Conflict, match="has ended"):
        jobs.adopt(job.id)
    with pytest.raises(NotFound):
        jobs.adopt("nope")


def test_a_heartbeat_keeps_a_turn_alive(db):
    from sqlalchemy import update

    from inspection.store.jobs import JobKind, JobStore
    from inspection.store.schema import jobs as table

    jobs = JobStore(db)
    job = jobs.start(JobKind.LOOP, params={})
    with db.engine.begin() as conn:
        conn.execute(update(table).where(table.c.id == job.id).values(heartbeat_at=utcnow() - timedelta(hours=1)))
    assert not jobs.alive(jobs.get(job.id))
    jobs.heartbeat(job.id)
    assert jobs.alive(jobs.get(job.id))
