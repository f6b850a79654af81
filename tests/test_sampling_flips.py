"""The sampler's mirror test (after CALD), as a specification: a detector that sees a frame and its
mirror alike scores 0; boxes that move, change class or appear on one side only score by how
sure the detector was of them; flip_disagreement sends the frames it disagrees most on, never
one below its minimum; the production model measures each stored frame, golden part and all."""

from __future__ import annotations

import cv2
import numpy as np
import pytest

from inspection.detections import Detections
from inspection.rules import StationRules, Verdict
from inspection.store.records import InspectionRecord
from labeling.sampling.flips import disagreement, unmirror
from labeling.sampling.strategies import Candidate
from tests.conftest import promote

RULES = StationRules.model_validate({"default": {"fail_conf": 0.5, "review_conf": 0.25}})
NAMES = {0: "short", 1: "open"}


def boxes(*found: tuple[tuple[float, float, float, float], float, int]) -> Detections:
    """Detections in a 100 x 80 frame: (xyxy, confidence, class id) each."""
    if not found:
        return Detections.empty(NAMES, image_wh=(100, 80))
    return Detections(np.array([f[0] for f in found]), np.array([f[1] for f in found]),
                      np.array([f[2] for f in found]), NAMES, image_wh=(100, 80))


def test_boxes_found_in_the_mirror_are_mapped_back_into_the_frame():
    mirrored = boxes(((0, 10, 20, 30), 0.9, 0), ((70, 0, 100, 5), 0.4, 1))
    back = unmirror(mirrored)
    assert back.xyxy.tolist() == [[80, 10, 100, 30], [0, 0, 30, 5]]
    assert back.confidence.tolist() == pytest.approx([0.9, 0.4]) and back.class_id.tolist() == [0, 1]
    assert unmirror(back).xyxy.tolist() == mirrored.xyxy.tolist()  # mirroring twice is no change
    assert len(unmirror(boxes())) == 0


def test_a_detector_that_sees_the_mirror_alike_scores_zero_and_each_kind_of_disagreement_scores_its_confidence():
    short = ((10, 10, 30, 30), 0.8, 0)
    assert disagreement(boxes(short), boxes(short))[0] == 0.0  # same place, class and confidence
    assert disagreement(boxes(), boxes()) == (0.0, {"boxes": 0, "mirror_boxes": 0})  # nothing either way

    # The same defect, found half as sure in the mirror: max(0.8, 0.4) x (1 - 1 x (1 - 0.4)).
    score, detail = disagreement(boxes(short), boxes(((10, 10, 30, 30), 0.4, 0)))
    assert score == pytest.approx(0.32)
    assert detail == {"class": "short", "confidence": 0.8, "twin_confidence": 0.4, "iou": 1.0,
                      "boxes": 1, "mirror_boxes": 1}
    # Found at a place half overlapping (IoU 1/3): 0.8 x (1 - 1/3).
    moved, detail = disagreement(boxes(short), boxes(((20, 10, 40, 30), 0.8, 0)))
    assert moved == pytest.approx(0.8 * (1 - 1 / 3)) and detail["iou"] == pytest.approx(0.3333)
    # Another class at the same place is no twin: each box stands alone, the surer one counts.
    score, detail = disagreement(boxes(short), boxes(((10, 10, 30, 30), 0.6, 1)))
    assert score == pytest.approx(0.8)
    assert detail["class"] == "short" and detail["only_in"] == "frame" and detail["twin_confidence"] is None
    # A defect only the mirror shows counts as one only the frame shows.
    score, detail = disagreement(boxes(), boxes(short))
    assert score == pytest.approx(0.8) and detail["only_in"] == "mirror"
    # The service asks for boxes down to 0.01: a faint box without a twin weighs its 0.02, no
    # more than a real box found a little less sure in the mirror (0.8 x 0.05).
    faint = ((60, 60, 70, 70), 0.02, 1)
    score, detail = disagreement(boxes(short, faint), boxes(((10, 10, 30, 30), 0.75, 0)))
    assert score == pytest.approx(0.04) and detail["class"] == "short"


def candidate(i: int, flip: tuple[float, dict] | None) -> Candidate:
    record = InspectionRecord(id=f"f{i:03d}", station_id="a", verdict=Verdict.PASS, rule="r", model_name="m",
                              model_version="v1", rules_version=1, width=64, height=64, detections=[], timings={},
                              image_sha256="a" * 64, image_format="png")
    return Candidate(record, RULES, flip=flip)


def test_flip_disagreement_sends_the_frames_the_detector_disagrees_most_on_never_one_below_its_minimum():
    from labeling.sampling.strategies import FlipDisagreement, Selection

    pool = [candidate(0, (0.1, {"class": "short"})), candidate(1, (0.7, {"class": "open", "iou": 0.2})),
            candidate(2, (0.0, {})), candidate(3, None), candidate(4, (0.45, {"class": "short"})),
            candidate(5, (0.7, {"class": "short"}))]
    strategy = FlipDisagreement(share=0.5, min_disagreement=0.2)
    picks = strategy.choose(pool, 5, Selection(budget=10))
    assert [c.id for c, _ in picks] == ["f001", "f005", "f004"]  # most first, a tie by id; 0.1 is too little
    assert picks[0][1].detail == {"disagreement": 0.7, "class": "open", "iou": 0.2}
    assert [c.id for c, _ in strategy.choose(pool, 1, Selection(budget=10))] == ["f001"]
    # Even with no minimum, a frame seen alike (0) or never measured is nobody's pick.
    anything = FlipDisagreement(share=0.5, min_disagreement=0.0)
    assert {c.id for c, _ in anything.choose(pool, 10, Selection(budget=10))} == {"f000", "f001", "f004", "f005"}


def stored(images, pixels: np.ndarray, **values) -> InspectionRecord:
    sha = images.put(cv2.imencode(".png", pixels)[1].tobytes(), "png")
    return InspectionRecord(station_id="a", verdict=Verdict.PASS, rule="r", model_name="m", model_version="v1",
                            rules_version=1, width=pixels.shape[1], height=pixels.shape[0], detections=[],
                            timings={}, image_sha256=sha, image_format="png", **values)


def passes(detector, pixels: np.ndarray) -> list[Detections]:
    """The detector's boxes in a frame and in its mirror (the mirror's as found, not mapped back)."""
    size = (pixels.shape[1], pixels.shape[0])
    return detector.predict([pixels, cv2.flip(pixels, 1)], original_sizes=[size, size])


def telling_frame(detector, files: list) -> np.ndarray:
    """The first frame on which mapping the mirror's boxes back changes the score, so that a
    test on it can tell a mapped mirror from an unmapped one."""
    for file in files[:10]:
        pixels = cv2.imread(str(file))
        found, mirrored = passes(detector, pixels)
        if disagreement(found, unmirror(mirrored))[0] != pytest.approx(disagreement(found, mirrored)[0], rel=1e-5):
            return pixels
    raise AssertionError("the test model's boxes score alike mapped back or not on every frame: the test below "
                         "could not tell a mapped mirror from an unmapped one; train the fixture longer")


def test_each_stored_frame_is_measured_against_its_mirror_by_the_production_detector(
        trained_model, untrained_model, tmp_path):
    from inspection.store.images import ImageStore
    from labeling.sampling.flips import FlipConsistency

    images = ImageStore(tmp_path / "images")
    flips = FlipConsistency(trained_model.raw, images, conf=0.0)  # its boxes are faint: ask for every one
    pixels = telling_frame(flips.detector, sorted((trained_model.data_yaml.parent / "images" / "val").iterdir()))
    frame, mirror = stored(images, pixels), stored(images, cv2.flip(pixels, 1))
    gone = InspectionRecord(station_id="a", verdict=Verdict.PASS, rule="r", model_name="m", model_version="v1",
                            rules_version=1, width=128, height=96, detections=[], timings={},
                            image_sha256="f" * 64, image_format="png")
    scores = flips.scores([frame, mirror, gone])
    assert set(scores) == {frame.id, mirror.id}  # an image gone: no score, no error
    ours, theirs = scores[frame.id], scores[mirror.id]
    assert 0 < ours[0] < 1 and ours[1]["boxes"] > 0 and ours[1]["mirror_boxes"] > 0
    # The frame's score is the disagreement of its two passes, the mirror's boxes mapped back
    # into the frame (on this frame, unmapped boxes would score otherwise).
    found, mirrored = passes(flips.detector, pixels)
    assert ours[0] == pytest.approx(disagreement(found, unmirror(mirrored))[0], rel=1e-5)
    # A frame and its mirror are the same pair of passes, taken the other way round.
    assert theirs[0] == pytest.approx(ours[0], rel=1e-3)
    # At the service's own threshold (0.01) an untrained detector finds nothing either way.
    untrained = FlipConsistency(untrained_model, images)
    assert untrained.scores([frame])[frame.id] == (0.0, {"boxes": 0, "mirror_boxes": 0})


def test_a_reference_model_mirrors_the_frame_and_its_golden_part_together(untrained_reference_model, tmp_path):
    from inspection.errors import ModelError
    from inspection.store.database import Database
    from inspection.store.images import ImageStore
    from inspection.store.records import RecordStore
    from inspection.store.references import StationReferences
    from labeling.sampling.flips import FlipConsistency

    db = Database(f"sqlite:///{tmp_path / 'qc.db'}")
    db.upgrade()
    RecordStore(db).add_station("a", rules=RULES)
    references, images = StationReferences(db), ImageStore(tmp_path / "images")
    rng = np.random.default_rng(1)
    board = rng.integers(0, 255, (96, 128, 3), dtype=np.uint8)
    sha = images.put(cv2.imencode(".png", board)[1].tobytes(), "png")
    references.set("a", image_sha256=sha, image_format="png", image_wh=(128, 96), created_by="test")
    judged, unjudged = stored(images, board, reference_version=1), stored(images, board)

    with pytest.raises(ModelError, match="give the stations' references"):
        FlipConsistency(untrained_reference_model, images)
    scores = FlipConsistency(untrained_reference_model, images, references=references, conf=0.0).scores(
        [judged, unjudged])
    assert set(scores) == {judged.id}  # judged without a golden part: nothing to compose it with
    assert scores[judged.id][1]["boxes"] > 0
    db.dispose()


def test_the_bridge_measures_mirrors_with_the_production_model_and_says_so_when_there_is_none(
        sampling_bridge, untrained_model, caplog):
    from labeling.sampling.flips import FlipConsistency
    from labeling.sampling.policy import SamplingPolicy

    bridge = sampling_bridge
    rng = np.random.default_rng(2)
    for verdict in (Verdict.REVIEW, Verdict.PASS, Verdict.PASS):
        record = stored(bridge.images, rng.integers(0, 255, (96, 96, 3), dtype=np.uint8))
        record.verdict = verdict
        bridge.records.save_inspection(record)
    policy = SamplingPolicy.model_validate({"budget_per_station_day": 2, "window_days": 7, "strategies": [
        {"use": "flip_disagreement", "share": 0.5, "min_disagreement": 0.0}, {"use": "review", "share": 0.5}]})
    with caplog.at_level("WARNING"):
        blind = bridge.sample(policy)
    assert "flip_disagreement needs the production model's passes over each frame and its mirror" in caplog.text
    assert "flip_disagreement picks nothing without the detector's passes" in caplog.text
    assert [p.reasons[0]["reason"] for p in blind] == ["review"]  # its share passed on

    promote(untrained_model)
    assert isinstance(bridge.flips(), FlipConsistency)
    # The untrained detector finds nothing in a frame nor in its mirror: no disagreement to send.
    assert [p.reasons[0]["reason"] for p in bridge.sample(policy)] == ["review"]
