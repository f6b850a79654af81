"""The active-learning sampler and the loop's job store, as a specification: a budget per station
and day, every pick with its reasons, reviewer and shadow disagreements first, a reproducible
random share of PASS frames, a new strategy as one class and one line of policy; one loop turn
at a time, an abandoned one taken over."""

from __future__ import annotations

from datetime import timedelta
from typing import ClassVar

import numpy as np
import pytest
import yaml

from inspection.errors import ConfigError, Conflict
from inspection.rules import StationRules, Verdict
from inspection.store.database import Database
from inspection.store.records import InspectionRecord, RecordStore, utcnow
from labeling.sampling.strategies import Candidate, Found, PolicyLine
from tests.conftest import promote

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
    from labeling.sampling.policy import SamplingPolicy, policy_path

    shipped = SamplingPolicy.load()
    assert shipped.budget_per_station_day > 0
    names = [s.name for s in shipped.strategies]
    assert [n for n in names if n in SHARES] == [n for n in SHARES if n in names]  # the order these tests use
    assert {"class_quota", "uncertain_diverse", "typical_diverse"} <= set(names)  # the set-level lines ship
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
    for example in ("policy-cold-start.yaml", "policy-later-rounds.yaml"):  # shipped beside it, to start from
        assert SamplingPolicy.load(policy_path().with_name(example)).review_labels.use
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
    shipped = yaml.safe_load(policy_path().read_text())  # the shipped per-frame lines, with one line more
    shipped["strategies"] = [{"use": "tests.test_sampling:NightShift", "share": 0, "until_hour": 6},
                             *(s for s in shipped["strategies"] if s["use"] in SHARES)]
    mine.write_text(yaml.safe_dump(shipped))

    loaded = SamplingPolicy.load(mine)
    assert loaded.strategies[0].name == "night_shift"  # first: the top priority
    picks = {p.inspection_id: p for p in sample(db, loaded)}
    assert set(night) <= set(picks) and not set(day) & set(picks)  # confident FAILs: no shipped reason
    assert picks[night[0]].reasons == [{"reason": "night_shift", "hour": 0}]


def frame(i: int, at, confidence=None, cls="dent", **values) -> Candidate:
    """A candidate (no database) with its embedding at `at`."""
    detections = [] if confidence is None else [{"class": cls, "class_id": 1, "confidence": confidence,
                                                 "box": [1, 1, 20, 20]}]
    record = InspectionRecord(id=f"f{i:03d}", station_id="a", verdict=Verdict.FAIL, rule="r", model_name="m",
                              model_version="v1", rules_version=1, width=64, height=64, detections=detections,
                              timings={}, image_sha256="a" * 64, image_format="png")
    return Candidate(record, RULES, embedding=np.asarray(at, dtype=np.float64), **values)


def blob(start: int, centre, spread, **values) -> list[Candidate]:
    """A tight core at `centre` (the densest frame, first) with looser frames around it."""
    cx, cy = centre
    offsets = [(0, 0), (0.1, 0), (0, 0.1)] + [(spread * np.cos(a), spread * np.sin(a))
                                               for a in np.linspace(0, 2 * np.pi, 6, endpoint=False)]
    return [frame(start + i, (cx + dx, cy + dy), **values) for i, (dx, dy) in enumerate(offsets)]


def test_typical_diverse_picks_the_densest_frame_of_each_cluster_largest_first_as_typiclust():
    from labeling.sampling.strategies import Selection, TypicalDiverse

    big, middle, small = blob(0, (0, 0), 1.0), blob(100, (20, 0), 1.0)[:6], blob(200, (0, 20), 1.0)[:4]
    pool = [*small, *middle, *big]  # the order given does not matter
    strategy = TypicalDiverse(share=0.3, neighbours=2, seed=0)
    picks = strategy.choose(pool, 3, Selection(budget=10))
    assert [c.id for c, _ in picks] == [big[0].id, middle[0].id, small[0].id]  # one per cluster, the core
    assert [f.detail["cluster_size"] for _, f in picks] == [9, 6, 4]
    assert all(f.detail["clusters"] == 3 and f.detail["typicality"] > 0 for _, f in picks)
    # A cluster holding a frame picked before (by a line above) is covered: the others are chosen.
    covered = strategy.choose([c for c in pool if c is not big[0]], 2, Selection(budget=10, chosen=[big[0]]))
    assert {c.id for c, _ in covered} == {middle[0].id, small[0].id}
    assert strategy.choose(pool, 3, Selection(budget=10)) == picks  # deterministic


def test_uncertain_diverse_keeps_the_most_uncertain_weighted_by_class_weakness_then_spreads_by_k_center():
    from labeling.sampling.strategies import Selection, UncertainDiverse, uncertainty

    weak = {"dent": 0.2, "crack": 0.9}  # holdout AP50: dent is the weak class
    twins = [frame(i, (0, 0), 0.5, class_ap=weak) for i in range(4)]  # the most uncertain, all alike
    apart = [frame(10, (5, 0), 0.45, class_ap=weak), frame(11, (0, 5), 0.4, class_ap=weak)]
    strong = frame(20, (9, 9), 0.5, cls="crack", class_ap=weak)  # as unsure, but of a class the model knows
    confident = frame(30, (-9, -9), 0.98, class_ap=weak)
    assert uncertainty(twins[0])[0] == pytest.approx(0.8) and uncertainty(strong)[0] == pytest.approx(0.1)
    assert uncertainty(frame(40, (0, 0)))[0] == 0.0  # no box, no uncertainty

    strategy = UncertainDiverse(share=0.3, pool_factor=2)
    picks = strategy.choose([*twins, *apart, strong, confident], 3, Selection(budget=10))
    # One twin, then the farthest (a tie goes to the more uncertain); the crack never made the pool.
    assert [c.id for c, _ in picks] == [twins[0].id, apart[0].id, apart[1].id]
    first, second, _ = (f.detail for _, f in picks)
    assert first == {"class": "dent", "confidence": 0.5, "class_ap": 0.2, "uncertainty": 0.8, "distance": None,
                     "pool": 6}
    assert second["distance"] == pytest.approx(5.0) and second["uncertainty"] == pytest.approx(0.72)
    # Spread away from what was picked before it, too (a pool of five: the three twins left and both apart).
    wider = UncertainDiverse(share=0.3, pool_factor=5)
    after = wider.choose([*twins[1:], *apart], 1, Selection(budget=10, chosen=[twins[0]]))
    assert [c.id for c, _ in after] == [apart[0].id]


def test_class_quotas_give_every_predicted_class_its_minimum_rarest_first():
    from labeling.sampling.strategies import ClassQuota, Selection

    dents = [frame(i, (0, 0), 0.5 + i / 100) for i in range(8)]
    cracks = [frame(10 + i, (0, 0), 0.9, cls="crack") for i in range(2)]
    scratch = [frame(20, (0, 0), 0.9, cls="scratch")]
    quota = ClassQuota(share=0.5, min_share=0.2)  # 2 frames of each class in a budget of 10
    picks = quota.choose([*dents, *cracks, *scratch], 5, Selection(budget=10))
    classes = [f.detail["class"] for _, f in picks]
    assert classes == ["scratch", "crack", "dent", "crack", "dent"]  # round by round, the rarest first
    assert [c.id for c, _ in picks if c.classes == {"dent"}] == [dents[0].id, dents[1].id]  # nearest the threshold
    assert picks[0][1].detail == {"class": "scratch", "minimum": 2, "frames_of_class": 1, "margin": 0.4}
    # Frames picked before count towards the minimum.
    topped = quota.choose([*dents[2:], *cracks], 5, Selection(budget=10, chosen=dents[:2]))
    assert [f.detail["class"] for _, f in topped] == ["crack", "crack"]


class Looks:
    """Embeddings for the test below: each frame's place, by inspection id."""

    def __init__(self, places):
        self.places = places

    def vectors(self, records):
        return {r.id: np.asarray(self.places[r.id], dtype=np.float64) for r in records if r.id in self.places}


def test_set_level_lines_share_the_budget_with_the_others_and_every_pick_keeps_all_its_reasons(db, caplog):
    from labeling.sampling.sampler import sample

    store = RecordStore(db)
    store.add_station("a", rules=RULES)
    rare = add(store, "a", Verdict.FAIL, 0.9, cls="crack")
    unsure = [add(store, "a", Verdict.REVIEW, 0.3) for _ in range(4)]
    quiet = [add(store, "a", Verdict.PASS) for _ in range(6)]
    places = {rare: (0, 9), **{i: (n, 0) for n, i in enumerate(unsure)},
              **{i: (20 + n, 20) for n, i in enumerate(quiet)}}
    lines = [{"use": "class_quota", "share": 0.25, "min_share": 0.25},
             {"use": "typical_diverse", "share": 0.25, "neighbours": 2, "seed": 0},
             {"use": "uncertain_diverse", "share": 0.5, "pool_factor": 2},
             {"use": "review", "share": 0.0}]
    picks = sample(db, policy(strategies=lines), embeddings=Looks(places), class_ap={"dent": 0.4})
    first = {p.inspection_id: p.reasons[0] for p in picks}
    assert len(picks) == 4 and [r["reason"] for r in first.values()].count("uncertain_diverse") == 2
    assert first[rare] == {"reason": "class_quota", "class": "crack", "minimum": 1, "frames_of_class": 1,
                           "margin": 0.4}  # a quarter of 4: the one crack, the rarest class
    typical = next(r for r in first.values() if r["reason"] == "typical_diverse")
    assert typical["cluster_size"] == 6  # the PASS frames: the largest cluster nothing covered yet
    spread = [p for p in picks if p.reasons[0]["reason"] == "uncertain_diverse"]
    assert {p.inspection_id for p in spread} <= set(unsure) and spread[1].reasons[0]["distance"] == 3.0
    for pick in spread:  # the reason it won, then every other reason that applies, with figures
        assert pick.reasons[0]["uncertainty"] == 0.36 and pick.reasons[1:] == [{"reason": "review", "rule": "r"}]
    # Without embeddings (no production model yet) the set-level lines that need them pick
    # nothing, say so, and pass their share on: class_quota still runs on the classes alone.
    with caplog.at_level("WARNING", logger="labeling.sampling.sampler"):
        blind = sample(db, policy(strategies=lines))
    assert "typical_diverse, uncertain_diverse picks nothing without the detector's embeddings" in caplog.text
    assert {p.reasons[0]["reason"] for p in blind} <= {"class_quota", "review"}
    assert first[rare] in [p.reasons[0] for p in blind]


def test_embeddings_come_from_the_detector_itself_without_touching_the_served_file(untrained_model, tmp_path):
    import hashlib

    import cv2

    from inspection.store.images import ImageStore
    from labeling.sampling.embeddings import DetectorEmbeddings

    before = hashlib.sha256(untrained_model.read_bytes()).hexdigest()
    images = ImageStore(tmp_path / "images")
    rng = np.random.default_rng(0)
    shas = [images.put(cv2.imencode(".png", rng.integers(0, 255, (90, 120, 3), dtype=np.uint8))[1].tobytes(), "png")
            for _ in range(2)]
    records = [InspectionRecord(station_id="a", verdict=Verdict.PASS, rule="r", model_name="m", model_version="v1",
                                rules_version=1, width=120, height=90, detections=[], timings={},
                                image_sha256=sha, image_format="png") for sha in [*shas, shas[0], "f" * 64]]
    embeddings = DetectorEmbeddings(untrained_model, images)
    assert embeddings.feature.startswith("/model.")  # the head's input at its coarsest scale
    vectors = embeddings.vectors(records)
    assert set(vectors) == {r.id for r in records[:3]}  # an image gone: no embedding, no error
    a, b, same = (vectors[r.id] for r in records[:3])
    assert np.linalg.norm(a) == pytest.approx(1.0) and np.array_equal(a, same) and not np.array_equal(a, b)
    assert hashlib.sha256(untrained_model.read_bytes()).hexdigest() == before


def test_a_reference_models_embedding_is_of_the_frame_composed_with_the_golden_part_it_was_judged_against(
        untrained_reference_model, tmp_path):
    import cv2

    from inspection.errors import ModelError
    from inspection.store.images import ImageStore
    from inspection.store.references import StationReferences
    from labeling.sampling.embeddings import DetectorEmbeddings

    db = Database(f"sqlite:///{tmp_path / 'qc.db'}")
    db.upgrade()
    store, references, images = RecordStore(db), StationReferences(db), ImageStore(tmp_path / "images")
    store.add_station("a", rules=RULES)
    rng = np.random.default_rng(0)
    board = rng.integers(0, 255, (96, 128, 3), dtype=np.uint8)
    other_board = rng.integers(0, 255, (96, 128, 3), dtype=np.uint8)
    for golden in (board, other_board):  # golden part version 1, then 2
        sha = images.put(cv2.imencode(".png", golden)[1].tobytes(), "png")
        references.set("a", image_sha256=sha, image_format="png", image_wh=(128, 96), created_by="test")
    frame = images.put(cv2.imencode(".png", board)[1].tobytes(), "png")
    records = [InspectionRecord(station_id="a", verdict=Verdict.PASS, rule="r", model_name="m", model_version="v1",
                                rules_version=1, width=128, height=96, detections=[], timings={},
                                image_sha256=frame, image_format="png", reference_version=version)
               for version in (1, 2, None)]

    with pytest.raises(ModelError, match="give the stations' references"):
        DetectorEmbeddings(untrained_reference_model, images)
    vectors = DetectorEmbeddings(untrained_reference_model, images, references=references).vectors(records)
    assert set(vectors) == {records[0].id, records[1].id}  # judged without a golden part: no embedding
    against_own, against_other = vectors[records[0].id], vectors[records[1].id]
    assert np.linalg.norm(against_own) == pytest.approx(1.0)
    assert not np.allclose(against_own, against_other)  # the same frame, another golden part: another pair
    db.dispose()

def test_the_bridge_samples_with_the_production_models_embeddings_and_says_so_when_there_is_none(
        sampling_bridge, untrained_model, caplog):
    import cv2

    from labeling.sampling.policy import SamplingPolicy, policy_path

    bridge = sampling_bridge
    rng = np.random.default_rng(1)
    for i in range(6):  # two looks of the line: dark and bright parts
        pixels = rng.integers(0, 60, (96, 96, 3), dtype=np.uint8) + (150 if i % 2 else 0)
        sha = bridge.images.put(cv2.imencode(".png", pixels.astype(np.uint8))[1].tobytes(), "png")
        bridge.records.save_inspection(InspectionRecord(
            station_id="a", verdict=Verdict.REVIEW, rule="r", model_name="m", model_version="v1", rules_version=1,
            width=96, height=96, detections=[{"class": "dent", "class_id": 0, "confidence": 0.3, "box": [1, 1, 9, 9]}],
            timings={}, image_sha256=sha, image_format="png"))
    cold = SamplingPolicy.load(policy_path().with_name("policy-cold-start.yaml")).model_copy(
        update={"budget_per_station_day": 2})
    with caplog.at_level("WARNING", logger="labeling.bridge"):
        blind = bridge.sample(cold)
    assert "typical_diverse needs the production model's embeddings" in caplog.text
    assert "typical_diverse" not in {p.reasons[0]["reason"] for p in blind}

    promote(untrained_model)
    picks = bridge.sample(cold)
    # Half the budget of 2 to typical_diverse (the class quota's 0.4 frame passing on to it), and
    # what is left to the REVIEW band; each pick with the reason it won first, then the others.
    assert [p.reasons[0]["reason"] for p in picks] == ["typical_diverse", "review"]
    typical = picks[0].reasons
    assert typical[0]["clusters"] == 1 and typical[0]["cluster_size"] == 6 and typical[0]["typicality"] > 0
    assert typical[1:] == [{"reason": "review", "rule": "r"}]


def test_a_plants_own_policy_in_qc_label_policy_governs_sampling_and_every_pull(qc_home, tmp_path, monkeypatch):
    from labeling.bridge import Bridge
    from labeling.sampling.policy import policy_path
    from labeling.settings import LabelSettings

    mine = tmp_path / "our-policy.yaml"
    shipped = yaml.safe_load(policy_path().read_text())
    mine.write_text(yaml.safe_dump({**shipped, "budget_per_station_day": 1, "strategies": [
        {"use": "review", "share": 1.0}], "negatives": {"share": 0.5, "seed": 3}}))
    monkeypatch.setenv("QC_LABEL_POLICY", str(mine))
    bridge = Bridge(LabelSettings(home=qc_home))
    store = bridge.records
    store.add_station("a", rules=RULES)
    for _ in range(3):
        add(store, "a", Verdict.REVIEW, 0.3)

    assert bridge.policy().negatives.share == 0.5  # what `qc label pull` and `qc loop` pull with
    picks = bridge.sample()
    assert len(picks) == 1 and picks[0].reasons[0]["reason"] == "review"  # its budget, its one line
    monkeypatch.setenv("QC_LABEL_POLICY", str(tmp_path / "missing.yaml"))
    with pytest.raises(ConfigError, match=r"missing\.yaml"):
        Bridge(LabelSettings(home=qc_home)).policy()
    bridge.db.dispose()

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
