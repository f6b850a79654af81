"""`qc eval` and `inspection.evaluate.metrics`: what the scores mean, on hand-made boxes.

Boxes here are xyxy in pixels. A truth box is written T(...), a prediction P(..., score).
No model is trained: the command is run on a hand-made ONNX file whose output is constant.
"""

from __future__ import annotations

import importlib.util
import json
import re
from pathlib import Path

import cv2
import numpy as np
import pytest

from inspection.detections import Detections
from inspection.evaluate.metrics import box_iou, evaluate

NAMES = {0: "open", 1: "short"}
SIZE = (640, 480)


def truth(*boxes: tuple[float, float, float, float, int]) -> Detections:
    """Truth boxes (x1, y1, x2, y2, class)."""
    if not boxes:
        return Detections.empty(names=NAMES, image_wh=SIZE)
    array = np.array(boxes, dtype=np.float32)
    return Detections(
        xyxy=array[:, :4],
        confidence=np.ones(len(array)),
        class_id=array[:, 4],
        names=NAMES,
        image_wh=SIZE,
    )


def predicted(*boxes: tuple[float, float, float, float, int, float]) -> Detections:
    """Predicted boxes (x1, y1, x2, y2, class, score)."""
    if not boxes:
        return Detections.empty(names=NAMES, image_wh=SIZE)
    array = np.array(boxes, dtype=np.float64)
    return Detections(
        xyxy=array[:, :4],
        confidence=array[:, 5],
        class_id=array[:, 4],
        names=NAMES,
        image_wh=SIZE,
    )


def test_perfect_predictions_score_map_one():
    truths = [truth((10, 10, 60, 40, 0), (200, 100, 260, 180, 1)), truth((50, 50, 90, 90, 0))]
    predictions = [
        predicted((10, 10, 60, 40, 0, 0.9), (200, 100, 260, 180, 1, 0.8)),
        predicted((50, 50, 90, 90, 0, 0.7)),
    ]

    result = evaluate(predictions, truths, names=NAMES)

    assert result.map50 == pytest.approx(1.0)
    assert result.map50_95 == pytest.approx(1.0)
    assert result.per_class[0].ap50 == pytest.approx(1.0)
    assert (result.precision, result.recall, result.f1) == (1.0, 1.0, 1.0)
    assert result.false_positives == [] and result.misses == []
    assert (result.images, result.instances) == (2, 3)
    assert result.per_class[0].support == 2 and result.per_class[1].support == 1


def test_no_predictions_score_zero_and_every_truth_is_a_miss():
    truths = [truth((10, 10, 60, 40, 0)), truth((200, 100, 260, 180, 1))]

    result = evaluate([predicted(), predicted()], truths, names=NAMES)

    assert result.map50 == 0.0 and result.map50_95 == 0.0
    assert result.recall == 0.0 and result.precision == 0.0
    assert [(m.image, m.class_id) for m in result.misses] == [(0, 0), (1, 1)]


def test_a_box_shifted_below_iou_half_is_a_miss_and_a_false_positive():
    shifted = (6, 0, 16, 10, 0, 0.9)  # IoU 0.25 with the truth
    assert box_iou(np.array([[0, 0, 10, 10]]), np.array([shifted[:4]]))[0, 0] == pytest.approx(0.25)

    result = evaluate([predicted(shifted)], [truth((0, 0, 10, 10, 0))], names=NAMES)

    assert result.map50 == 0.0
    assert len(result.misses) == 1 and result.misses[0].box == (0, 0, 10, 10)
    assert len(result.false_positives) == 1
    assert result.false_positives[0].score == pytest.approx(0.9)
    assert (result.per_class[0].tp, result.per_class[0].fp, result.per_class[0].fn) == (0, 1, 1)


def test_deeppcb_criterion_accepts_iou_0_4_where_coco_map50_does_not():
    overlapping = (0, 0, 10, 4, 0, 0.9)  # IoU 0.4: above DeepPCB's 0.33, below COCO's 0.5

    result = evaluate(
        [predicted(overlapping)], [truth((0, 0, 10, 10, 0))], names=NAMES, criterion="deeppcb"
    )

    assert result.map50 == 0.0
    assert result.deeppcb is not None
    score = result.deeppcb
    assert (score.precision, score.recall, score.fscore) == (1.0, 1.0, 1.0)
    assert result.to_json()["deeppcb"]["per_class"]["open"]["recall"] == 1.0


def test_deeppcb_counts_each_truth_once():
    twice = [(0, 0, 10, 10, 0, 0.9), (0, 0, 10, 9, 0, 0.8)]

    result = evaluate(
        [predicted(*twice)], [truth((0, 0, 10, 10, 0))], names=NAMES, criterion="deeppcb"
    )

    assert (result.deeppcb.tp, result.deeppcb.fp, result.deeppcb.fn) == (1, 1, 0)
    assert result.deeppcb.precision == 0.5


def test_deeppcb_needs_iou_strictly_above_0_33_where_the_deploy_view_takes_0_5_itself():
    # IoU exactly 0.33 (a third of the truth, full height) and exactly 0.5.
    truths = [truth((0, 0, 100, 100, 0), (200, 0, 300, 100, 1))]
    predictions = [predicted((0, 0, 33, 100, 0, 0.9), (200, 0, 250, 100, 1, 0.8))]

    result = evaluate(predictions, truths, names=NAMES, criterion="deeppcb")

    assert (result.deeppcb.tp, result.deeppcb.fp, result.deeppcb.fn) == (1, 1, 1)
    assert result.deeppcb.per_class == {0: (0.0, 0.0, 0.0), 1: (1.0, 1.0, 1.0)}
    assert [(m.tp, m.fp, m.fn) for m in result.per_class.values()] == [(0, 1, 1), (1, 0, 0)]


def test_recall_at_the_deploy_threshold_ignores_lower_scores_but_map_ranks_them():
    truths = [truth((10, 10, 60, 40, 0), (100, 100, 150, 140, 0))]
    predictions = [predicted((10, 10, 60, 40, 0, 0.9), (100, 100, 150, 140, 0, 0.1))]

    result = evaluate(predictions, truths, names=NAMES, deploy_conf=0.25)

    assert result.per_class[0].recall == 0.5
    assert result.per_class[0].precision == 1.0
    assert result.per_class[0].ap50 == pytest.approx(1.0)  # both boxes, ranked, are right
    assert [m.box for m in result.misses] == [(100, 100, 150, 140)]
    assert result.false_positives == []


def test_the_deploy_threshold_keeps_a_box_scored_exactly_at_it():
    result = evaluate(
        [predicted((10, 10, 60, 40, 0, 0.25))],
        [truth((10, 10, 60, 40, 0))],
        names=NAMES,
        deploy_conf=0.25,
    )

    assert result.per_class[0].recall == 1.0


def test_confusion_matrix_counts_a_class_swap_off_the_diagonal():
    truths = [truth((10, 10, 60, 40, 0), (300, 300, 340, 330, 1))]
    predictions = [
        predicted(
            (10, 10, 60, 40, 1, 0.9),  # a "short" on the true "open"
            (300, 300, 340, 330, 1, 0.8),
            (500, 20, 520, 40, 0, 0.6),  # an "open" where nothing is
        )
    ]

    result = evaluate(predictions, truths, names=NAMES)

    # [predicted, true], index 2 is background
    assert result.confusion.tolist() == [
        [0, 0, 1],  # an "open" predicted on background
        [1, 1, 0],  # "short" predicted on a true open (the swap) and on a true short
        [0, 0, 0],  # nothing missed outright
    ]
    # per class the swap is a miss of "open" and a false positive of "short"
    assert (result.per_class[0].fn, result.per_class[1].fp) == (1, 1)


def test_a_class_without_truths_has_no_ap_and_stays_out_of_map():
    result = evaluate(
        [predicted((10, 10, 60, 40, 0, 0.9))], [truth((10, 10, 60, 40, 0))], names=NAMES
    )

    assert result.per_class[1].ap50 is None and result.per_class[1].support == 0
    assert result.map50 == pytest.approx(1.0)
    assert set(result.pr_curves) == {0}


def test_json_has_the_documented_keys():
    result = evaluate(
        [predicted((10, 10, 60, 40, 0, 0.9))], [truth((10, 10, 60, 40, 0))], names=NAMES
    )

    document = json.loads(json.dumps(result.to_json()))

    assert {"map50", "map50_95", "per_class", "images", "instances", "deploy_conf"} <= set(document)
    assert "deeppcb" not in document
    assert set(document["per_class"]) == {"open", "short"}
    per_class = set(document["per_class"]["open"])
    assert {"ap50", "ap50_95", "precision", "recall", "f1", "support"} <= per_class
    assert document["per_class"]["short"]["ap50"] is None
    assert document["deploy_conf"] == 0.25


def test_mismatched_inputs_are_refused():
    with pytest.raises(ValueError, match="one prediction per truth image"):
        evaluate([predicted()], [], names=NAMES)
    with pytest.raises(ValueError, match="class ids \\[7\\]"):
        evaluate([predicted((0, 0, 5, 5, 7, 0.9))], [truth()], names=NAMES)


def test_map_agrees_with_ultralytics_on_random_boxes(tmp_path):
    """Cross-check with Ultralytics' validator maths (`match_predictions` + `ap_per_class`).

    Both interpolate precision at 101 recall points, but COCOeval samples the envelope at
    each point while Ultralytics integrates an interpolated curve (trapezoids), so they differ
    slightly (by 0.001 on this set); 0.02 is the tolerance.
    """
    if importlib.util.find_spec("ultralytics") is None:
        pytest.skip("ultralytics is not installed (train extra)")
    from types import SimpleNamespace

    import torch

    from inspection.settings import Settings
    from training.ultralytics_env import load_ultralytics

    load_ultralytics(Settings(home=tmp_path))
    from ultralytics.engine.validator import BaseValidator
    from ultralytics.utils.metrics import ap_per_class

    rng = np.random.default_rng(7)
    names = {0: "a", 1: "b", 2: "c"}
    truths, predictions = [], []
    for _ in range(80):
        n = int(rng.integers(0, 6))
        xy = rng.uniform(0, 500, (n, 2))
        wh = rng.uniform(15, 120, (n, 2))
        classes = rng.integers(0, 3, n)
        truth_boxes = np.concatenate([xy, xy + wh], axis=1)
        found = rng.random(n) < 0.85
        jitter = rng.normal(0, 0.12, (n, 4)) * np.concatenate([wh, wh], axis=1)
        pred_boxes = (truth_boxes + jitter)[found]
        pred_classes = np.where(rng.random(n) < 0.1, rng.integers(0, 3, n), classes)[found]
        scores = rng.uniform(0.2, 1.0, n)[found]
        k = int(rng.integers(0, 4))  # background false positives
        fxy = rng.uniform(0, 500, (k, 2))
        fwh = rng.uniform(15, 80, (k, 2))
        pred_boxes = np.concatenate([pred_boxes, np.concatenate([fxy, fxy + fwh], axis=1)])
        pred_classes = np.concatenate([pred_classes, rng.integers(0, 3, k)])
        scores = np.concatenate([scores, rng.uniform(0.01, 0.7, k)])
        truths.append(Detections(truth_boxes, np.ones(n), classes, names, (640, 640)))
        predictions.append(Detections(pred_boxes, scores, pred_classes, names, (640, 640)))

    ours = evaluate(predictions, truths, names=names)

    validator = SimpleNamespace(iouv=torch.linspace(0.5, 0.95, 10))
    tp, conf, pred_cls, target_cls = [], [], [], []
    for found, t in zip(predictions, truths, strict=True):
        order = np.argsort(-found.confidence, kind="stable")  # match_predictions expects this order
        p = found[order]
        iou = torch.from_numpy(box_iou(t.xyxy, p.xyxy))
        correct = BaseValidator.match_predictions(
            validator, torch.from_numpy(p.class_id), torch.from_numpy(t.class_id), iou
        )
        tp.append(correct.numpy())
        conf.append(p.confidence)
        pred_cls.append(p.class_id)
        target_cls.append(t.class_id)
    ap = ap_per_class(
        np.concatenate(tp),
        np.concatenate(conf),
        np.concatenate(pred_cls),
        np.concatenate(target_cls),
    )[5]

    assert ours.map50 == pytest.approx(float(ap[:, 0].mean()), abs=0.02)
    assert ours.map50_95 == pytest.approx(float(ap.mean()), abs=0.02)
    assert 0.3 < ours.map50 < 0.95  # the set is neither trivial nor hopeless


# -- scoring several predictors ----------------------------------------------------------------


def crowded_split(seed: int, *, images: int, classes: int, per_image: int):
    """Truths and many low-threshold predictions around them, as a validation split gives."""
    rng = np.random.default_rng(seed)
    names = {c: f"class{c}" for c in range(classes)}
    truths, predictions = [], []
    for _ in range(images):
        n = int(rng.integers(0, 12))
        xy = rng.uniform(0, 600, (n, 2))
        boxes = np.concatenate([xy, xy + rng.uniform(5, 80, (n, 2))], axis=1)
        ids = rng.integers(0, classes, n)
        truths.append(Detections(xyxy=boxes, confidence=np.ones(n), class_id=ids, names=names,
                                 image_wh=(700, 700)))
        near = rng.integers(0, max(n, 1), per_image)
        guess = (boxes[near] if n else rng.uniform(0, 600, (per_image, 4))) + rng.normal(0, 6, (per_image, 4))
        guess[:, 2:] = np.maximum(guess[:, 2:], guess[:, :2] + 1)
        right_class = rng.random(per_image) < 0.8
        guess_ids = np.where(right_class & (n > 0), ids[near] if n else 0, rng.integers(0, classes, per_image))
        predictions.append(Detections(xyxy=guess, confidence=rng.uniform(0.001, 1, per_image),
                                      class_id=guess_ids, names=names, image_wh=(700, 700)))
    return predictions, truths, names


def test_faster_coco_eval_gives_pycocotools_figures_to_4_decimals():
    from inspection.evaluate.metrics import _coco_scores

    predictions, truths, names = crowded_split(11, images=120, classes=5, per_image=150)
    fast = _coco_scores(predictions, truths, names=names)  # the default engine
    reference = _coco_scores(predictions, truths, names=names, engine="pycocotools")
    assert fast[0] == pytest.approx(reference[0], abs=5e-5)  # mAP50
    assert fast[1] == pytest.approx(reference[1], abs=5e-5)  # mAP50-95
    for ours, theirs in zip(fast[2:4], reference[2:4], strict=True):  # per-class AP50, AP50-95
        assert ours.keys() == theirs.keys() and len(ours) == len(names)
        assert all(ours[c] == pytest.approx(theirs[c], abs=5e-5) for c in ours)
    for c, curve in reference[4].items():  # the PR curves drawn in the report
        np.testing.assert_allclose(fast[4][c].precision, curve.precision, atol=5e-5)


def test_score_many_reads_each_image_once_and_scores_each_predictor_as_score_does(
    tmp_path, monkeypatch
):
    import inspection.detect.imaging
    from inspection.evaluate.scoring import Sample, score, score_many

    labels = {"a": "0 0.5 0.5 0.25 0.25\n", "b": "1 0.5 0.5 0.5 0.5\n"}
    data = _yolo_folder(tmp_path / "data", labels)
    samples = [
        Sample(image=image, label=data.parent / "labels" / "val" / f"{image.stem}.txt")
        for image in sorted((data.parent / "images" / "val").glob("*.png"))
    ]
    names = {0: "open", 1: "short"}

    def centred(class_id: int, side: float):
        def predict(pixels: np.ndarray) -> Detections:
            half = side * pixels.shape[1] / 2
            return Detections(xyxy=[[32 - half, 32 - half, 32 + half, 32 + half]],
                              confidence=[0.9], class_id=[class_id], names=names,
                              image_wh=(pixels.shape[1], pixels.shape[0]))
        return predict

    predictors = {"right open": centred(0, 0.25), "right short": centred(1, 0.5)}
    reads = []
    read_file = inspection.detect.imaging.read_file
    monkeypatch.setattr(
        inspection.detect.imaging, "read_file", lambda path: (reads.append(path), read_file(path))[1]
    )

    many = score_many(predictors, names=names, samples=samples, progress=False)

    assert len(reads) == 2
    assert list(many) == ["right open", "right short"]
    for key, predict in predictors.items():
        alone = score(predict, names=names, samples=samples, progress=False)
        assert many[key].evaluation.to_json() == alone.evaluation.to_json()
        assert many[key].paths == alone.paths == [s.image for s in samples]
    assert many["right open"].evaluation.per_class[0].tp == 1
    assert many["right short"].evaluation.per_class[1].tp == 1


# -- the report --------------------------------------------------------------------------------


def test_report_writes_a_self_contained_html_with_its_images_embedded(tmp_path, monkeypatch):
    pytest.importorskip("matplotlib")
    import training.report
    from training.report import write_report

    reads = []
    read_file = training.report.read_file
    monkeypatch.setattr(
        training.report, "read_file", lambda path: (reads.append(path), read_file(path))[1]
    )

    paths = []
    for i in range(2):
        path = tmp_path / f"board{i}.png"
        cv2.imwrite(str(path), np.full((SIZE[1], SIZE[0], 3), 90 + 40 * i, np.uint8))
        paths.append(path)
    truths = [truth((10, 10, 60, 40, 0)), truth((300, 300, 340, 330, 1))]
    predictions = [predicted((6, 0, 16, 10, 0, 0.9)), predicted((300, 300, 340, 330, 0, 0.8))]
    result = evaluate(predictions, truths, names=NAMES, criterion="deeppcb")

    page = write_report(result, tmp_path / "report", image_paths=paths, details={"model": "m.onnx"})

    text = page.read_text(encoding="utf-8")
    assert page.name == "report.html"
    for name in ("pr_curves", "confusion_matrix", "per_class", "false_positives", "misses"):
        png = (tmp_path / "report" / f"{name}.png").read_bytes()
        assert png.startswith(b"\x89PNG")
    embedded = re.findall(r'src="data:image/png;base64,([A-Za-z0-9+/=]+)"', text)
    assert len(embedded) == 5
    assert not re.search(r"https?://|<link|<script|@import|url\(", text)  # nothing fetched
    assert "m.onnx" in text and "DeepPCB" in text and "short" in text
    # A false positive and a miss in each image: each image decoded once for its tiles.
    assert (len(result.false_positives), len(result.misses)) == (2, 2)
    assert sorted(reads) == sorted(paths)


# -- the command -------------------------------------------------------------------------------


def _constant_model(path: Path, *, boxes: list[tuple[float, ...]]) -> Path:
    """An ONNX 'detector' for 64x64 inputs that always outputs `boxes` (cx, cy, w, h, class,
    score) in Ultralytics' raw-head layout [1, 4 + classes, N], with its metadata."""
    onnx = pytest.importorskip("onnx")
    from onnx import TensorProto, helper, numpy_helper

    head = np.zeros((1, 4 + len(NAMES), len(boxes)), np.float32)
    for n, (cx, cy, w, h, class_id, score) in enumerate(boxes):
        head[0, :4, n] = (cx, cy, w, h)
        head[0, 4 + class_id, n] = score
    graph = helper.make_graph(
        [
            # output = head + 0 * mean(images): the input must feed the output to stay in the graph
            helper.make_node("ReduceMean", ["images"], ["mean"], keepdims=0),
            helper.make_node("Mul", ["mean", "zero"], ["nothing"]),
            helper.make_node("Add", ["head", "nothing"], ["output0"]),
        ],
        "constant",
        [helper.make_tensor_value_info("images", TensorProto.FLOAT, [1, 3, 64, 64])],
        [helper.make_tensor_value_info("output0", TensorProto.FLOAT, list(head.shape))],
        initializer=[
            numpy_helper.from_array(head, "head"),
            numpy_helper.from_array(np.zeros((), np.float32), "zero"),
        ],
    )
    model = helper.make_model(graph, opset_imports=[helper.make_opsetid("", 17)])
    model.ir_version = 8
    metadata = {"names": str(NAMES), "imgsz": "[64, 64]", "stride": "32", "task": "detect"}
    for key, value in metadata.items():
        entry = model.metadata_props.add()
        entry.key, entry.value = key, value
    onnx.save(model, str(path))
    return path


def _yolo_folder(root: Path, labels: dict[str, str | None]) -> Path:
    for n, (stem, text) in enumerate(labels.items()):
        (root / "images" / "val").mkdir(parents=True, exist_ok=True)
        grey = np.full((64, 64, 3), 100 + n, np.uint8)  # distinct images, distinct hashes
        cv2.imwrite(str(root / "images" / "val" / f"{stem}.png"), grey)
        if text is not None:
            (root / "labels" / "val").mkdir(parents=True, exist_ok=True)
            (root / "labels" / "val" / f"{stem}.txt").write_text(text)
    data = root / "data.yaml"
    data.write_text("train: images/val\nval: images/val\nnames:\n  0: open\n  1: short\n")
    return data


@pytest.fixture
def cli(qc_home):
    """`qc eval` alone, so these tests do not depend on the other commands' modules."""
    import typer
    from typer.testing import CliRunner

    from qc.commands.evaluate import evaluate as command

    app = typer.Typer()
    app.command("eval")(command)
    app.command("unused")(lambda: None)  # two commands: Typer then keeps the "eval" name
    runner = CliRunner()
    return lambda *args: runner.invoke(app, ["eval", *args])


def test_eval_command_prints_the_metrics_as_json(tmp_path, cli):
    pytest.importorskip("onnxruntime")
    # One right "open" box at the centre; one "short" scored 0.1, below the deploy threshold.
    model = _constant_model(
        tmp_path / "m.onnx", boxes=[(32, 32, 20, 20, 0, 0.9), (10, 10, 8, 8, 1, 0.1)]
    )
    centre = "0 0.5 0.5 0.3125 0.3125\n"  # the model's box, as a YOLO label
    data = _yolo_folder(tmp_path / "data", {"a": centre, "b": centre})

    result = cli("--model", str(model), "--data", str(data), "--json")

    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert document["images"] == 2 and document["instances"] == 2
    assert document["map50"] == pytest.approx(1.0)
    assert document["per_class"]["open"]["recall"] == 1.0
    assert document["per_class"]["short"]["fp"] == 0  # 0.1 < --conf 0.25


def test_eval_command_prints_a_table_and_writes_the_report(tmp_path, cli):
    pytest.importorskip("onnxruntime")
    pytest.importorskip("matplotlib")
    model = _constant_model(tmp_path / "m.onnx", boxes=[(32, 32, 20, 20, 1, 0.9)])  # wrong class
    data = _yolo_folder(tmp_path / "data", {"a": "0 0.5 0.5 0.3125 0.3125\n", "b": None})

    result = cli(
        "--model", str(model), "--data", str(data), "--report", str(tmp_path / "r"),
        "--criterion", "deeppcb",
    )

    assert result.exit_code == 0, result.output
    assert "mAP50 0.0000" in result.stdout and "DeepPCB" in result.stdout
    assert re.search(r"^open\s+1\s", result.stdout, flags=re.MULTILINE)
    assert "1 image(s) have no label file" in result.stderr
    assert (tmp_path / "r" / "report.html").is_file()


def test_eval_command_names_the_data_yaml_when_the_split_is_missing(tmp_path, cli):
    from inspection.errors import DatasetError

    data = _yolo_folder(tmp_path / "data", {"a": ""})

    result = cli("--model", str(tmp_path / "m.onnx"), "--data", str(data), "--split", "test")

    assert isinstance(result.exception, DatasetError)
    assert str(data) in str(result.exception) and "'test:'" in str(result.exception)


def test_eval_command_reads_a_dataset_version(tmp_path, cli, qc_home):
    pytest.importorskip("onnxruntime")
    from inspection.data.versions import import_dataset

    model = _constant_model(tmp_path / "m.onnx", boxes=[(32, 32, 20, 20, 0, 0.9)])
    centre = "0 0.5 0.5 0.3125 0.3125\n"
    folder = _yolo_folder(tmp_path / "data", {"a": centre, "b": centre, "c": ""}).parent
    # Splits follow content hashes; nearly all go to val here, and the test reads which.
    version = import_dataset(
        folder, format="yolo", name="boards", test_fraction=0.0, val_fraction=0.99
    )
    val = list(version.images(split="val"))
    assert val, "no image hashed into val; change the images"

    result = cli("--model", str(model), "--data", "boards@v1", "--json")

    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert document["images"] == len(val)
    assert document["instances"] == sum(len(image.detections) for image in val)
    # the model's one box is right on a labelled image and a false positive on the blank one
    assert document["per_class"]["open"]["fp"] == sum(not image.detections for image in val)


def test_eval_command_names_the_missing_dataset(cli):
    from inspection.errors import DatasetError

    result = cli("--model", "m.onnx", "--data", "nosuch@v1")

    assert isinstance(result.exception, DatasetError)
    assert "nosuch" in str(result.exception)
