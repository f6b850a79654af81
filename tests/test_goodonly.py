"""A good-only model judges a new part from its golden image and good frames alone
(inspection/detect/goodonly.py, `qc goodonly build`, `qc predict`/`qc eval` with a .qcgood).

    PYTHONPATH=. python -m pytest -q tests/test_goodonly.py

The part is a synthetic PCB (`make_sample(..., part=PART)`: one design and light, each frame its
own sensor noise), its good frames shifted by up to 2 px, exposed a few percent off and
JPEG-compressed as a camera sends them (`optics.jitter`).
"""

from __future__ import annotations

import json

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from inspection.data.synth.generator import make_sample
from inspection.data.synth.optics import jitter
from inspection.detect.goodonly import VERSION, GoodOnlyModel, Params, grow
from inspection.detections import Detections
from inspection.errors import ConfigError, ImageError, ModelError
from qc.cli import app

PART = 7
SIZE = 256


@pytest.fixture(scope="module")
def golden() -> np.ndarray:
    sample = make_sample(1000, width=SIZE, height=SIZE, surface="pcb", good=True, reference=True, part=PART)
    assert sample.reference is not None
    return sample.reference


def good_frames(golden: np.ndarray, count: int, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    return [jitter(golden, rng) for _ in range(count)]


@pytest.fixture(scope="module")
def model(golden) -> GoodOnlyModel:
    return GoodOnlyModel.build(golden, good_frames(golden, 30, seed=1), params=Params(false_alarms=0.1))


def painted(frame: np.ndarray, box: tuple[int, int, int, int]) -> np.ndarray:
    """`frame` with a dark blot (a stain, a burn) inside `box`."""
    out = frame.copy()
    x1, y1, x2, y2 = box
    cv2.ellipse(out, ((x1 + x2) // 2, (y1 + y2) // 2), ((x2 - x1) // 2, (y2 - y1) // 2), 0, 0, 360, (20, 20, 20), -1)
    return out


def iou(a, b) -> float:
    x1, y1 = max(a[0], b[0]), max(a[1], b[1])
    x2, y2 = min(a[2], b[2]), min(a[3], b[3])
    inter = max(0, x2 - x1) * max(0, y2 - y1)
    return inter / ((a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter)


def test_a_defect_painted_on_a_good_part_is_found_where_it_is(model, golden):
    box = (100, 60, 116, 74)
    frame = painted(good_frames(golden, 1, seed=50)[0], box)

    judged = model.predict(frame)

    assert len(judged.detections) >= 1
    best = max(judged.detections.xyxy.tolist(), key=lambda found: iou(found, box))
    assert iou(best, box) > 0.5
    assert set(judged.detections.class_names) == {"anomaly"}
    assert (judged.detections.confidence >= 0.5).all()
    assert judged.anomaly.shape == frame.shape[:2] and judged.anomaly[65:70, 104:112].max() > model.threshold


def test_good_frames_shifted_exposed_and_noisy_raise_no_more_boxes_than_the_rate(model, golden):
    unseen = good_frames(golden, 40, seed=2)

    boxes = [len(model.predict(frame).detections) for frame in unseen]

    assert sum(boxes) / len(unseen) <= 0.1, boxes


def test_defective_frames_score_above_good_ones(model, golden):
    good = [model.predict(f).score for f in good_frames(golden, 10, seed=3)]
    bad = [model.predict(painted(f, (40 + 15 * i, 150, 52 + 15 * i, 162))).score
           for i, f in enumerate(good_frames(golden, 10, seed=4))]

    assert min(bad) > max(good)


def test_boxes_grow_to_the_inspectors_size_and_overlapping_ones_merge():
    tight = Detections(xyxy=np.float32([[10, 10, 14, 16], [20, 12, 24, 14], [200, 200, 210, 230]]),
                       confidence=np.float32([0.6, 0.9, 0.7]), class_id=np.zeros(3), names={0: "anomaly"},
                       image_wh=(SIZE, SIZE))

    grown = grow(tight, 30)

    assert grown.xyxy.tolist() == [[0, 0, 37, 28], [190, 200, 220, 230]]  # clipped at the image's edge
    assert grown.confidence.tolist() == pytest.approx([0.9, 0.7])
    assert grow(tight, 0) is tight


def test_a_model_built_to_grow_boxes_reports_them_grown(golden):
    params = Params(box_min_side=40)
    model = GoodOnlyModel.build(golden, good_frames(golden, 8, seed=11), params=params)
    judged = model.predict(painted(good_frames(golden, 1, seed=12)[0], (100, 60, 116, 74)))

    sides = judged.detections.xyxy[:, 2:] - judged.detections.xyxy[:, :2]
    assert len(sides) and (sides >= 40).all()


def test_boxes_stay_in_frame_pixels_when_the_part_moved(model, golden):
    moved = cv2.warpAffine(golden, np.float32([[1, 0, 6], [0, 1, -4]]), (SIZE, SIZE), borderMode=cv2.BORDER_REFLECT)
    judged = model.predict(painted(moved, (150, 180, 166, 194)))

    assert judged.shift == pytest.approx((6, -4), abs=0.5)
    assert max(iou(found, (150, 180, 166, 194)) for found in judged.detections.xyxy.tolist()) > 0.5


def test_the_threshold_is_the_lowest_keeping_the_held_out_good_frames_to_the_rate(golden):
    frames = good_frames(golden, 20, seed=5)
    strict = GoodOnlyModel.build(golden, frames, params=Params(false_alarms=0.0))
    loose = GoodOnlyModel.build(golden, frames, params=Params(false_alarms=5.0))

    assert strict.info["false_alarms_held_out"] == 0.0
    assert loose.threshold <= strict.threshold
    assert strict.info["held_out"] == 6 and strict.info["fitted"] == 14


def test_the_model_file_round_trips(model, golden, tmp_path):
    path = model.save(tmp_path / "part.qcgood")
    again = GoodOnlyModel.load(path)
    frame = painted(good_frames(golden, 1, seed=6)[0], (30, 30, 44, 44))

    assert again.params == model.params and again.threshold == model.threshold
    assert np.array_equal(again.low, model.low) and np.array_equal(again.high, model.high)
    assert np.array_equal(model.predict(frame).detections.xyxy, again.predict(frame).detections.xyxy)
    assert again.header()["version"] == VERSION
    assert [p.name for p in tmp_path.iterdir()] == ["part.qcgood"], "no temporary file left behind"
    assert path.stat().st_size < 200_000


def test_a_frame_decoded_at_half_size_is_judged_and_boxed_in_its_own_pixels(model, golden):
    frame = painted(good_frames(golden, 1, seed=7)[0], (100, 60, 124, 80))
    half = cv2.resize(frame, (SIZE // 2, SIZE // 2), interpolation=cv2.INTER_AREA)

    judged = model.predict(half)

    assert judged.detections.image_wh == (SIZE // 2, SIZE // 2)
    assert max(iou(found, (50, 30, 62, 40)) for found in judged.detections.xyxy.tolist()) > 0.4


# -- refused, with the fix named --------------------------------------------------------------


def test_too_few_good_frames_are_refused(golden):
    with pytest.raises(ConfigError, match=r"at least 4.*add good frames"):
        GoodOnlyModel.build(golden, good_frames(golden, 2, seed=8))


def test_a_good_frame_of_another_size_is_named(golden):
    frames = [*good_frames(golden, 4, seed=9), np.zeros((100, 120, 3), np.uint8)]
    with pytest.raises(ImageError, match=r"cam4\.png: 120x100 pixels.*same camera"):
        GoodOnlyModel.build(golden, frames, names=["cam0", "cam1", "cam2", "cam3", "cam4.png"])


def test_frames_of_another_part_are_left_out_and_too_few_left_is_refused(golden):
    other = [np.random.default_rng(i).integers(0, 255, golden.shape, np.uint8) for i in range(5)]
    with pytest.raises(ConfigError, match="align with the golden"):
        GoodOnlyModel.build(golden, other)


def test_a_frame_of_another_view_is_refused(model):
    with pytest.raises(ImageError, match="not the same camera view"):
        model.predict(np.zeros((SIZE, SIZE * 2, 3), np.uint8))


def test_parameters_out_of_range_are_refused_by_name():
    with pytest.raises(ConfigError, match=r"k=0.*edge_tolerance=40"):
        Params(k=0, edge_tolerance=40).check()


@pytest.mark.parametrize("content, fix", [
    (b"not a zip", "not a good-only model file"),
    (None, "no such good-only model"),
])
def test_a_file_that_is_not_a_model_is_refused_with_the_fix(tmp_path, content, fix):
    path = tmp_path / "part.qcgood"
    if content is not None:
        path.write_bytes(content)
    with pytest.raises(ModelError, match=rf"{fix}.*qc goodonly build"):
        GoodOnlyModel.load(path)


def test_a_model_of_another_version_is_refused(model, tmp_path, monkeypatch):
    import inspection.detect.goodonly as goodonly

    monkeypatch.setattr(goodonly, "VERSION", VERSION + 1)
    path = model.save(tmp_path / "future.qcgood")
    monkeypatch.setattr(goodonly, "VERSION", VERSION)
    with pytest.raises(ModelError, match=rf"version {VERSION + 1}.*update qc"):
        GoodOnlyModel.load(path)


# -- the command line -------------------------------------------------------------------------


@pytest.fixture
def station(golden, tmp_path):
    """A golden image and a folder of good frames, as a station would have them."""
    (tmp_path / "good").mkdir()
    cv2.imwrite(str(tmp_path / "golden.png"), golden)
    for i, frame in enumerate(good_frames(golden, 12, seed=10)):
        cv2.imwrite(str(tmp_path / "good" / f"{i:03d}.png"), frame)
    return tmp_path


def test_build_then_predict_from_the_command_line(station, qc_home):
    runner = CliRunner()
    built = runner.invoke(app, ["goodonly", "build", "--golden", str(station / "golden.png"),
                                "--good", str(station / "good"), "--out", str(station / "part.qcgood")])
    assert built.exit_code == 0, built.output
    assert json.loads(built.stdout)["used"] == 12
    frames = station / "frames"
    frames.mkdir()
    golden = cv2.imread(str(station / "golden.png"))
    cv2.imwrite(str(frames / "bad.png"), painted(golden, (100, 60, 116, 74)))
    cv2.imwrite(str(frames / "good.png"), golden)

    result = runner.invoke(app, ["predict", "--model", str(station / "part.qcgood"), str(frames),
                                 "--save", str(station / "judged")])

    assert result.exit_code == 0, result.output
    lines = {json.loads(line)["image"].rsplit("/", 1)[1]: json.loads(line) for line in result.stdout.splitlines()}
    assert [d["class"] for d in lines["bad.png"]["detections"]] == ["anomaly"]
    assert lines["good.png"]["detections"] == []
    assert lines["bad.png"]["anomaly_score"] > lines["good.png"]["anomaly_score"]
    assert (station / "judged" / "bad.png").is_file()


def test_build_refuses_an_output_without_the_model_suffix(station, qc_home):
    result = CliRunner().invoke(app, ["goodonly", "build", "--golden", str(station / "golden.png"),
                                      "--good", str(station / "good"), "--out", str(station / "part.onnx")])
    assert isinstance(result.exception, ConfigError)
    assert "suffix .qcgood" in str(result.exception)
    assert not (station / "part.onnx").exists()


def test_eval_scores_a_good_only_model_class_agnostic(station, qc_home, tmp_path):
    from inspection.data.synth.generator import write_dataset

    data = write_dataset(tmp_path / "data", n=6, seed=3, width=SIZE, height=SIZE, surface="pcb", part=PART,
                         val_fraction=0.5)
    built = CliRunner().invoke(app, ["goodonly", "build", "--golden", str(station / "golden.png"),
                                     "--good", str(station / "good"), "--out", str(station / "part.qcgood")])
    assert built.exit_code == 0, built.output

    result = CliRunner().invoke(app, ["eval", "--model", str(station / "part.qcgood"), "--data",
                                      str(data.data_yaml), "--json", "--criterion", "deeppcb"])

    assert result.exit_code == 0, result.output
    scored = json.loads(result.stdout)
    assert list(scored["per_class"]) == ["anomaly"]
    assert "deeppcb" in scored
