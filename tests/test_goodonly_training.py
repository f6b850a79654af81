"""A learned good-only model: the reference-mode detector trained on good frames alone, with
synthetic defects made on them (training/synthetic_defects.py, training/goodonly_data.py),
one class `anomaly` (recipe `good_only:`, `qc train --good-only --data GOOD@v1`).

    PYTHONPATH=. python -m pytest -q tests/test_goodonly_training.py

The part is a synthetic one (`make_sample(..., part=PART)`: one design and light, each frame
its own sensor noise); no defect image is drawn for training.
"""

from __future__ import annotations

import json
from pathlib import Path

import cv2
import numpy as np
import pytest
from typer.testing import CliRunner

from inspection.data.synth.generator import make_sample, sample_seed
from inspection.errors import ConfigError
from qc.cli import app
from training.recipe import Recipe, reference_defaults
from training.synthetic_defects import MIN_CHANGE, Kind, add_defects

PART = 31
SIZE = 192


def good_sample(index: int):
    return make_sample(sample_seed(3, index), width=SIZE, height=SIZE, part=PART, reference=True, good=True)


@pytest.fixture(scope="module")
def frame() -> np.ndarray:
    return good_sample(0).image


@pytest.mark.parametrize("kind", list(Kind))
def test_a_synthetic_defect_changes_nothing_visible_outside_its_box(frame, kind):
    for seed in range(6):
        made = add_defects(frame, np.random.default_rng(seed), count=(1, 3), size=(0.05, 0.2), kinds=(kind,))
        assert set(made.kinds) <= {kind}
        changed = cv2.absdiff(made.image, frame).max(axis=2) >= MIN_CHANGE
        inside = np.zeros_like(changed)
        for x0, y0, x1, y1 in made.boxes.astype(int):
            inside[y0:y1, x0:x1] = True
            # Tight: the box's edges touch changed pixels.
            box = changed[y0:y1, x0:x1]
            assert box[:, 0].any() and box[:, -1].any() and box[0].any() and box[-1].any()
        assert not (changed & ~inside).any()


def test_every_kind_makes_defects_and_the_same_seed_the_same_bytes(frame):
    made = [add_defects(frame, np.random.default_rng(seed), count=(2, 3)) for seed in range(12)]
    assert {kind for m in made for kind in m.kinds} == set(Kind)
    assert all(len(m.boxes) >= 1 for m in made)
    again = add_defects(frame, np.random.default_rng(5), count=(2, 3))
    assert np.array_equal(again.image, made[5].image) and np.array_equal(again.boxes, made[5].boxes)


def test_defects_on_a_grey_frame_stay_grey_and_boxes_grow_to_the_inspectors_size(frame):
    grey = cv2.cvtColor(frame, cv2.COLOR_BGR2GRAY)
    made = add_defects(grey, np.random.default_rng(1), count=(1, 1), size=(0.03, 0.05), min_box=40)
    assert made.image.shape == grey.shape
    sides = made.boxes[:, 2:] - made.boxes[:, :2]
    assert (sides >= 40 - 1e-3).all() or (made.boxes[:, [0, 1]] == 0).any() or (made.boxes[:, 2:] == SIZE).any()


def test_the_good_only_flag_makes_a_reference_recipe_and_checks_its_options():
    recipe = Recipe.model_validate({**reference_defaults(), "data": "GOOD@v1", "good_only": True})
    assert recipe.reference is not None and recipe.good_only is not None
    assert recipe.good_only.kinds == list(Kind)
    with pytest.raises(ConfigError, match=r"good_only.*count"):
        Recipe.checked({**reference_defaults(), "good_only": {"count": [3, 1]}}, source="r.yaml")
    with pytest.raises(ConfigError, match="kinds"):
        Recipe.checked({**reference_defaults(), "good_only": {"kinds": ["sticker"]}}, source="r.yaml")


def test_a_recipe_without_the_flag_keeps_its_hash():
    assert "good_only" not in Recipe(data="d.yaml").to_yaml()


def write_good_frames(root: Path, count: int) -> Path:
    """A YOLO folder of good frames (no label files), each with its golden part."""
    for index in range(count):
        sample = good_sample(index)
        for folder, pixels in (("images", sample.image), ("references", sample.reference)):
            (root / folder).mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(root / folder / f"{index:03d}.png"), pixels)
    return root


@pytest.fixture
def good_version(qc_home, tmp_path) -> str:
    from inspection.data.versions import import_dataset

    source = write_good_frames(tmp_path / "good", 16)
    version = import_dataset(source, format="yolo", name="GOOD", names=["anomaly"], allow_missing_labels=True,
                             val_fraction=0.25, test_fraction=0.0)
    assert version.has_references
    return version.ref


def test_good_frames_become_defective_variants_labelled_anomaly_beside_their_golden_part(good_version, tmp_path):
    from inspection.data.formats.yolo import reference_path_for
    from training.data import prepare
    from training.goodonly_data import synthesize_data
    from training.recipe import GoodOnlyOptions

    data = prepare(good_version, workdir=tmp_path / "data", references=True)
    made = synthesize_data(data, workdir=tmp_path / "synthetic", options=GoodOnlyOptions(variants=2), seed=0)
    assert made.names == {0: "anomaly"} and made.content_hash == data.content_hash
    images = sorted((tmp_path / "synthetic" / "images").rglob("*.png"))
    assert len(images) == 16 * 3  # each good frame, and two defective copies
    for image in images:
        label = (tmp_path / "synthetic" / "labels" / image.relative_to(tmp_path / "synthetic" / "images")
                 ).with_suffix(".txt")
        lines = label.read_text().splitlines()
        assert (lines == []) == image.stem.endswith("_good")
        assert all(line.split()[0] == "0" for line in lines)
        assert reference_path_for(image) is not None


@pytest.mark.slow
def test_qc_train_good_only_learns_from_good_frames_and_qc_eval_scores_it_class_agnostic(good_version, qc_home,
                                                                                         tmp_path):
    """A short run end to end: `qc train --good-only --data GOOD@v1`, `qc export`, then `qc eval`
    on labelled defective frames of the same part (five classes, scored as one)."""
    from inspection.data.formats.yolo import label_text, write_data_yaml
    from inspection.data.synth import CLASS_NAMES
    from inspection.detect.model_info import parse_metadata
    from inspection.detect.onnx_file import read_metadata

    runner = CliRunner()
    trained = runner.invoke(app, ["train", "--good-only", "--data", good_version, "--epochs", "1", "--imgsz", "160",
                                  "--batch", "8", "--name", "good"])
    assert trained.exit_code == 0, trained.output
    run = Path(json.loads(trained.stdout.strip().splitlines()[-1])["run"])
    assert "good_only:" in (run / "recipe.yaml").read_text()
    exported = runner.invoke(app, ["export", str(run), "--no-check"])
    assert exported.exit_code == 0, exported.output
    model = run / "export" / "model.onnx"
    metadata = read_metadata(model)
    assert parse_metadata(metadata).names == {0: "anomaly"}
    assert "reference" in metadata["qc_input"]

    truth = tmp_path / "defective"
    for index in range(6):
        sample = make_sample(sample_seed(4, index), width=SIZE, height=SIZE, part=PART, reference=True, good=False)
        for folder, pixels in (("images/val", sample.image), ("references/val", sample.reference)):
            (truth / folder).mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(truth / folder / f"{index}.png"), pixels)
        (truth / "labels/val").mkdir(parents=True, exist_ok=True)
        (truth / "labels/val" / f"{index}.txt").write_text(label_text(sample.detections))
    write_data_yaml(truth / "data.yaml", names=CLASS_NAMES, splits=["val"], root=truth)
    scored = runner.invoke(app, ["eval", "--model", str(model), "--data", str(truth / "data.yaml"), "--json"])
    assert scored.exit_code == 0, scored.output
    result = json.loads(scored.stdout)
    assert 0.0 <= result["map50"] <= 1.0
