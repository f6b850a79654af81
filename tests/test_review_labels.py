"""Labels that need no Label Studio, as a specification: a frame a reviewer decided box by box
on the review page enters the next dataset version directly (labelled_by review, with the
reviewer and time), the sampler no longer sends it to Label Studio unless the policy asks for
a second pass; PASS frames of a station enter as background images (empty label files), up
to the policy's share of that station's new images, spread over what the line looks like."""

from __future__ import annotations

import json
from datetime import timedelta

import cv2
import numpy as np
import pytest

from inspection.data import versions
from inspection.data.formats import LabelledImage
from inspection.detections import Detections
from inspection.rules import StationRules, Verdict
from inspection.store.database import Database
from inspection.store.images import ImageStore
from inspection.store.records import InspectionRecord, RecordStore, utcnow
from inspection.store.reviews import BoxCorrection, BoxDecision, FrameDecision, ReviewStore
from labeling.sampling.policy import SamplingPolicy

NAMES = {0: "dent", 1: "crack"}
RULES = StationRules.model_validate({"default": {"fail_conf": 0.5, "review_conf": 0.25}})
SIZE = 64


class NoLabelStudio:
    """Any use of Label Studio fails the test: these labels must come without it."""

    def __getattr__(self, name):
        raise AssertionError(f"Label Studio was used ({name})")


@pytest.fixture
def home(qc_home):
    from labeling.bridge import Bridge
    from labeling.settings import LabelSettings

    settings = LabelSettings(home=qc_home)
    db = Database.from_settings(settings)
    bridge = Bridge(settings, db=db, studio=NoLabelStudio())  # type: ignore[arg-type]
    for station in ("line1-cam1", "line2-cam1"):
        bridge.records.add_station(station, rules=RULES)
    # The dataset the model learnt from (line@v1): its classes are the labels' classes.
    first = qc_home / "first.png"
    first.write_bytes(_png(999))
    versions.write_version([LabelledImage(first, Detections([[2, 2, 9, 9]], [1.0], [0], NAMES, (SIZE, SIZE)))],
                           name="line", source={"format": "test"}, names=NAMES, root=settings.datasets_dir)
    yield bridge
    db.dispose()


def _png(seed: int) -> bytes:
    pixels = np.random.default_rng(seed).integers(0, 255, (SIZE, SIZE, 3), dtype=np.uint8)
    return cv2.imencode(".png", pixels)[1].tobytes()


def frame(bridge, seed: int, verdict: Verdict, boxes=(), station: str = "line1-cam1", when=None) -> str:
    sha = ImageStore(bridge.settings.images_dir).put(_png(seed), "png")
    detections = [{"class": cls, "class_id": 0, "confidence": conf, "box": list(box)} for cls, conf, box in boxes]
    record = InspectionRecord(station_id=station, verdict=verdict, rule="r", model_name="m", model_version="v1",
                              rules_version=1, width=SIZE, height=SIZE, detections=detections, timings={},
                              image_sha256=sha, image_format="png", created_at=when or utcnow())
    RecordStore(bridge.db).save_inspection(record)
    return record.id


def shipped(**changes) -> SamplingPolicy:
    """The shipped policy with its `review_labels` or `negatives` section replaced."""
    from labeling.sampling.policy import Negatives, ReviewLabels

    sections = {"review_labels": ReviewLabels, "negatives": Negatives}
    return SamplingPolicy.load().model_copy(update={k: sections[k].model_validate(v) for k, v in changes.items()})


def by_inspection(version) -> dict[str, dict]:
    return {e["lineage"].get("inspection_id"): e for e in version.entries}


def test_a_frame_reviewed_box_by_box_enters_the_next_version_labelled_by_review_without_label_studio(home):
    bridge = home
    reviews = ReviewStore(bridge.db)
    corrected = frame(bridge, 1, Verdict.FAIL, [("dent", 0.9, (4, 4, 20, 20)), ("dent", 0.6, (30, 30, 50, 50))])
    # One box confirmed, one the wrong class, and a missed defect drawn on the review page.
    review, _ = reviews.add(corrected, reviewer="kim", decision=FrameDecision.DEFECT, boxes=[
        BoxCorrection(BoxDecision.CONFIRMED, "dent", (4, 4, 20, 20), detection=0),
        BoxCorrection(BoxDecision.WRONG_CLASS, "crack", (30, 30, 50, 50), detection=1),
        BoxCorrection(BoxDecision.MISSED, "crack", (40, 2, 60, 12))])
    false_alarm = frame(bridge, 2, Verdict.FAIL, [("dent", 0.7, (8, 8, 16, 16))])
    reviews.add(false_alarm, reviewer="lee", decision=FrameDecision.FALSE_ALARM)
    retracted = frame(bridge, 3, Verdict.REVIEW, [("crack", 0.3, (8, 8, 16, 16))])
    reviews.add(retracted, reviewer="lee", decision=FrameDecision.DEFECT)
    reviews.add(retracted, reviewer="lee", decision=FrameDecision.RETRACTED)
    in_studio = frame(bridge, 4, Verdict.FAIL, [("dent", 0.8, (8, 8, 16, 16))])
    reviews.add(in_studio, reviewer="kim", decision=FrameDecision.DEFECT)
    bridge.labels.enqueue(bridge.project_title, [in_studio])  # sent for a second pass: its annotation labels it

    version = bridge.pull()
    assert version is not None and version.ref == "line@v2"
    assert version.manifest["source"]["format"] == "review"
    assert version.manifest["source"]["labelled_by"] == {"labelstudio": 0, "review": 2, "pass_negative": 0}
    entries = by_inspection(version)
    assert set(entries) == {None, corrected, false_alarm}  # None: line@v1's own image, kept
    lineage = entries[corrected]["lineage"]
    assert (lineage["labelled_by"], lineage["reviewer"], lineage["review_id"]) == ("review", "kim", review.id)
    assert lineage["reviewed_at"] == review.created_at.isoformat()
    assert lineage["boxes"] == {"confirmed": 1, "missed": 1, "wrong_class": 1}
    images = {i.lineage.get("inspection_id"): i for i in version.images()}
    labelled = images[corrected].detections
    assert labelled.class_names == ["dent", "crack", "crack"]
    assert labelled.xyxy.ravel().tolist() == pytest.approx([4, 4, 20, 20, 30, 30, 50, 50, 40, 2, 60, 12], abs=0.01)
    assert version.label_text(entries[false_alarm]) == ""  # nothing wrong: a background image
    assert entries[false_alarm]["lineage"]["reviewer"] == "lee"

    assert bridge.pull() is None  # nothing reviewed since: no new version
    # The reviewer changes their mind: the frame enters the next version with the new labels.
    again, _ = reviews.add(corrected, reviewer="park", decision=FrameDecision.DEFECT, boxes=[
        BoxCorrection(BoxDecision.FALSE_ALARM, "dent", (4, 4, 20, 20), detection=0)])
    later = bridge.pull()
    assert later is not None and later.manifest["source"]["base"] == "line@v2"
    moved = by_inspection(later)[corrected]
    assert (moved["lineage"]["reviewer"], moved["lineage"]["review_id"]) == ("park", again.id)
    relabelled = next(i for i in later.images() if i.lineage.get("inspection_id") == corrected)
    assert relabelled.detections.class_names == ["dent"]


def test_a_frame_with_a_box_still_undecided_is_not_labelled_until_the_reviewer_decides_the_rest(home):
    bridge = home
    reviews = ReviewStore(bridge.db)
    half = frame(bridge, 5, Verdict.FAIL, [("dent", 0.9, (4, 4, 20, 20)), ("dent", 0.6, (30, 30, 50, 50))])
    reviews.add(half, reviewer="kim", decision=FrameDecision.DEFECT, boxes=[
        BoxCorrection(BoxDecision.WRONG_CLASS, "crack", (4, 4, 20, 20), detection=0),
        BoxCorrection(BoxDecision.UNDECIDED, "dent", (30, 30, 50, 50), detection=1)])
    assert bridge.pull() is None  # the second box is only the model's word yet
    reviews.add(half, reviewer="kim", decision=FrameDecision.DEFECT, boxes=[
        BoxCorrection(BoxDecision.WRONG_CLASS, "crack", (4, 4, 20, 20), detection=0),
        BoxCorrection(BoxDecision.CONFIRMED, "dent", (30, 30, 50, 50), detection=1)])
    version = bridge.pull()
    assert version is not None and half in by_inspection(version)


def test_the_policy_decides_whether_reviewed_frames_are_labels_and_whether_label_studio_sees_them_again(home):
    bridge = home
    reviewed = frame(bridge, 11, Verdict.FAIL, [("dent", 0.9, (4, 4, 20, 20))])
    ReviewStore(bridge.db).add(reviewed, reviewer="kim", decision=FrameDecision.DEFECT, boxes=[
        BoxCorrection(BoxDecision.MISSED, "crack", (40, 2, 60, 12))])
    untouched = frame(bridge, 12, Verdict.REVIEW, [("dent", 0.3, (4, 4, 20, 20))])

    picked = {p.inspection_id for p in bridge.sample(shipped())}
    assert reviewed not in picked and untouched in picked  # Label Studio is for frames nobody looked at
    second = shipped(review_labels={"use": True, "decisions": ["defect"], "second_pass": True})
    assert reviewed in {p.inspection_id for p in bridge.sample(second)}

    off = shipped(review_labels={"use": False, "decisions": ["defect"], "second_pass": True})
    assert bridge.pull(policy=off) is None
    with pytest.raises(ValueError, match="a retraction is no label"):
        shipped(review_labels={"use": True, "decisions": ["retracted"], "second_pass": False})
    # A policy written before these sections: both are off.
    older = SamplingPolicy.model_validate({"budget_per_station_day": 2, "window_days": 1,
                                          "strategies": [{"use": "review", "share": 1}]})
    assert (older.labels_from_review, older.negatives.share) == ([], 0.0)


def test_pass_frames_enter_as_background_images_up_to_the_policys_share_of_a_stations_new_images(home):
    bridge = home
    reviews = ReviewStore(bridge.db)
    for seed in range(20, 26):  # six frames labelled by review on line1-cam1
        flagged = frame(bridge, seed, Verdict.FAIL, [("dent", 0.9, (4, 4, 20, 20))])
        reviews.add(flagged, reviewer="kim", decision=FrameDecision.DEFECT)
    good = [frame(bridge, seed, Verdict.PASS) for seed in range(40, 45)]
    unsure = frame(bridge, 50, Verdict.PASS, [("crack", 0.1, (4, 4, 20, 20))])  # a faint box: maybe a defect
    elsewhere = frame(bridge, 51, Verdict.PASS, station="line2-cam1")  # nothing labelled on that station
    old = frame(bridge, 52, Verdict.PASS, when=utcnow() - timedelta(days=30))  # outside the window

    version = bridge.pull(policy=shipped(negatives={"share": 0.25, "seed": 0}))
    assert version is not None
    negatives = [e for e in version.entries if e["lineage"].get("labelled_by") == "pass_negative"]
    # share 0.25 of the station's new images: 2 background images beside its 6 labelled frames
    assert len(negatives) == 2 and version.manifest["source"]["labelled_by"]["pass_negative"] == 2
    assert {e["lineage"]["inspection_id"] for e in negatives} <= set(good)
    assert not {unsure, elsewhere, old} & {e["lineage"]["inspection_id"] for e in negatives}
    for entry in negatives:
        assert version.label_text(entry) == "" and entry["boxes"] == 0  # an empty label file
        assert entry["lineage"]["verdict"] == "PASS" and entry["lineage"]["station"] == "line1-cam1"
        assert entry["lineage"]["chosen"]["picked_by"] == "hash"  # no production model: no embeddings here

    reviews.add(frame(bridge, 60, Verdict.FAIL, [("dent", 0.9, (4, 4, 20, 20))]), reviewer="kim",
                decision=FrameDecision.DEFECT)
    later = bridge.pull(policy=shipped(negatives={"share": 0.5, "seed": 0}))
    assert later is not None
    again = [e for e in later.entries if e["lineage"].get("labelled_by") == "pass_negative"]
    assert len(again) == 3  # the two kept, and one more beside the one new labelled frame
    assert bridge.pull(policy=shipped(negatives={"share": 0.0, "seed": 0})) is None


def test_negatives_are_spread_over_the_embeddings_one_per_look_of_the_line():
    from labeling.negatives import choose_negatives, negatives_wanted

    assert negatives_wanted({"a": 6, "b": 1}, 0.25) == {"a": 2, "b": 0}
    records = [InspectionRecord(station_id="a", verdict=Verdict.PASS, rule="r", model_name="m", model_version="v1",
                                rules_version=1, width=8, height=8, detections=[], timings={},
                                image_sha256=f"{i:064x}", image_format="png") for i in range(6)]
    looks = {r.id: np.array([1.0, 0.0]) if i < 4 else np.array([0.0, 1.0]) for i, r in enumerate(records)}

    class Looks:
        def vectors(self, frames):
            return {r.id: looks[r.id] for r in frames}

    chosen = choose_negatives(records, wanted={"a": 2}, embeddings=Looks(), seed=0)
    assert len(chosen) == 2 and {tuple(looks[r.id]) for r, _ in chosen} == {(1.0, 0.0), (0.0, 1.0)}
    assert chosen[1][1]["picked_by"] == "k_center" and chosen[1][1]["distance"] == pytest.approx(1.4142, abs=1e-3)


def test_qc_label_pull_and_a_loop_turn_take_labels_from_review_with_no_label_studio_configured(
        home, untrained_model, monkeypatch):
    from typer.testing import CliRunner

    from qc.cli import app
    from training.loop import LoopSettings, run_turn

    for variable in ("QC_LABEL_STUDIO_URL", "QC_LOOP_RECIPE", "QC_LABEL_DATASET", "QC_MODEL_NAME"):
        monkeypatch.delenv(variable, raising=False)
    bridge, reviews, cli = home, ReviewStore(home.db), CliRunner()
    first = frame(bridge, 70, Verdict.FAIL, [("dent", 0.9, (4, 4, 20, 20))])
    reviews.add(first, reviewer="kim", decision=FrameDecision.DEFECT)
    pulled = cli.invoke(app, ["label", "pull"])
    assert pulled.exit_code == 0, pulled.output
    assert json.loads(pulled.stdout)["version"] == "line@v2"
    assert json.loads(pulled.stdout)["labelled_by"] == {"labelstudio": 0, "review": 1, "pass_negative": 0}
    assert "nothing new to pull" in cli.invoke(app, ["label", "pull"]).output

    added = cli.invoke(app, ["models", "add", str(untrained_model), "--name", "default", "--promote"])
    assert added.exit_code == 0, added.output
    second = frame(bridge, 71, Verdict.FAIL, [("dent", 0.9, (4, 4, 20, 20))])
    reviews.add(second, reviewer="lee", decision=FrameDecision.DEFECT)
    turn = run_turn(LoopSettings(loop_min_new=1))
    pull = turn.progress["steps"]["pull"]
    assert (pull["version"], pull["note"]) == ("line@v3", "Label Studio not configured; labels from review only")
    assert second in turn.progress["steps"]["check"]["inspections"]
    assert turn.state.value == "failed" and "QC_LOOP_RECIPE" in turn.error  # the rest of the turn needs more
