"""What `inspection.data.synth` and `qc synth` promise: reproducible frames, exact labels, a YOLO
dataset that Ultralytics reads as it is."""

from __future__ import annotations

import doctest
import subprocess
import sys
from itertools import combinations
from pathlib import Path

import cv2
import numpy as np
import pytest
import yaml
from typer.testing import CliRunner

import inspection.data.synth
from inspection.data.formats.yolo import label_text
from inspection.data.synth import (
    CLASS_NAMES,
    SURFACES,
    defects,
    generator,
    is_val,
    make_sample,
    optics,
    sample_seed,
    surfaces,
    write_dataset,
)
from inspection.errors import ConfigError, DatasetError

NAMES = {0: "scratch", 1: "dent", 2: "crack", 3: "particle", 4: "missing"}


def files(root: Path) -> dict[str, bytes]:
    """Every image and label file under `root`, by relative path."""
    return {
        str(p.relative_to(root)): p.read_bytes()
        for p in sorted(root.rglob("*"))
        if p.is_file() and p.name != "data.yaml"
    }


def iou(a, b) -> float:
    iw = max(0.0, min(a[2], b[2]) - max(a[0], b[0]))
    ih = max(0.0, min(a[3], b[3]) - max(a[1], b[1]))
    inter = iw * ih
    union = (a[2] - a[0]) * (a[3] - a[1]) + (b[2] - b[0]) * (b[3] - b[1]) - inter
    return inter / union


@pytest.fixture(scope="module")
def many_samples():
    """Small frames are enough for statistics that do not depend on size."""
    return [make_sample(sample_seed(3, i), width=128, height=128) for i in range(180)]


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("synth") / "data"
    write_dataset(root, n=12, seed=3, width=200, height=150)
    return root


# --- reproducibility ----------------------------------------------------------------------------


def test_same_seed_gives_identical_images():
    first = make_sample(11, width=256, height=192)
    again = make_sample(11, width=256, height=192)
    assert np.array_equal(first.image, again.image)
    assert np.array_equal(first.detections.xyxy, again.detections.xyxy)
    assert np.array_equal(first.detections.class_id, again.detections.class_id)


def test_different_seeds_give_different_images():
    assert not np.array_equal(
        make_sample(1, width=128, height=128).image, make_sample(2, width=128, height=128).image
    )


def test_same_seed_writes_byte_identical_datasets(tmp_path):
    write_dataset(tmp_path / "a", n=6, seed=9, width=160, height=128)
    write_dataset(tmp_path / "b", n=6, seed=9, width=160, height=128)
    assert files(tmp_path / "a") == files(tmp_path / "b")
    assert len(files(tmp_path / "a")) == 12


def test_a_smaller_dataset_is_a_prefix_of_a_larger_one(tmp_path):
    write_dataset(tmp_path / "small", n=4, seed=2, width=160, height=128)
    write_dataset(tmp_path / "large", n=9, seed=2, width=160, height=128)
    small, large = files(tmp_path / "small"), files(tmp_path / "large")
    assert small and all(large.get(path) == content for path, content in small.items())


def test_dataset_image_i_is_the_sample_of_seed_and_index(dataset):
    label = (dataset / "labels" / "train" / "synth_000003.txt").read_text()
    sample = make_sample(sample_seed(3, 3), width=200, height=150)
    assert label == label_text(sample.detections)


# --- labels match pixels ------------------------------------------------------------------------


@pytest.mark.parametrize("seed", range(12))
def test_each_box_is_the_tight_box_of_the_pixels_its_defect_changed(seed):
    defective = make_sample(seed, width=320, height=320, good=False)
    clean = make_sample(seed, width=320, height=320, good=True)
    assert len(defective.detections) >= 1 and len(clean.detections) == 0
    change = np.abs(defective.image.astype(np.int16) - clean.image).max(axis=2)
    near_a_box = np.zeros(change.shape, bool)
    for (x0, y0, x1, y1), mask in zip(defective.detections.xyxy.astype(int), defective.masks, strict=True):
        # The box is exactly the extent of the defect's mask ...
        ys, xs = np.nonzero(mask)
        assert (xs.min(), ys.min(), xs.max() + 1, ys.max() + 1) == (x0, y0, x1, y1)
        # ... and the picture changed right up to each of its four edges.
        edges = [change[y0:y1, x0:x0 + 2], change[y0:y1, x1 - 2:x1],
                 change[y0:y0 + 2, x0:x1], change[y1 - 2:y1, x0:x1]]
        assert min(int(edge.max()) for edge in edges) >= 3
        assert change[mask].mean() >= 10  # clearly visible
        near_a_box[max(0, y0 - 3):y1 + 3, max(0, x0 - 3):x1 + 3] = True
    # Nothing changed anywhere else (blur may spread an edge by a pixel or two).
    assert change[~near_a_box].max(initial=0) == 0


def test_a_stamp_box_is_the_extent_of_its_mask():
    rng = np.random.default_rng(0)
    canvas = surfaces.render_surface("pcb", rng, width=256, height=256)
    for class_id, draw in defects.DRAWERS.items():
        stamp = next(s for s in (draw(canvas, rng) for _ in range(50)) if s is not None)
        assert stamp.class_id == class_id
        assert stamp.box == stamp.extent()


def test_boxes_lie_inside_the_image_and_carry_confidence_one(many_samples):
    for sample in many_samples:
        d = sample.detections
        assert d.image_wh == (128, 128) and d.names == NAMES
        assert np.all(d.xyxy[:, :2] >= 0) and np.all(d.xyxy[:, 2:] <= 128)
        assert np.all(d.xyxy[:, 2:] > d.xyxy[:, :2])
        assert np.all(d.confidence == 1.0)


# --- what the data looks like -------------------------------------------------------------------


def test_about_one_image_in_six_is_a_good_part(many_samples):
    good = sum(len(s.detections) == 0 for s in many_samples) / len(many_samples)
    assert 0.10 <= good <= 0.25


def test_a_defective_part_has_one_to_four_defects(many_samples):
    counts = {len(s.detections) for s in many_samples if len(s.detections)}
    assert counts == {1, 2, 3, 4}


def test_defects_do_not_overlap_heavily(many_samples):
    for sample in many_samples:
        for a, b in combinations(sample.detections.xyxy.tolist(), 2):
            assert iou(a, b) < 0.3


def test_every_class_and_every_surface_occurs(many_samples):
    assert {int(c) for s in many_samples for c in s.detections.class_id} == set(NAMES)
    assert {s.surface for s in many_samples} == set(SURFACES)


def test_defects_span_a_few_percent_to_a_fifth_of_the_image():
    sides = []
    for i in range(24):
        d = make_sample(sample_seed(4, i), width=320, height=320, good=False).detections
        sides += list((d.xyxy[:, 2:] - d.xyxy[:, :2]).max(axis=1) / 320)
    sides = np.array(sides)
    assert np.mean((sides >= 0.025) & (sides <= 0.25)) >= 0.9
    assert sides.max() <= 0.3


@pytest.mark.parametrize("surface", SURFACES)
def test_a_surface_can_be_asked_for(surface):
    sample = make_sample(0, width=160, height=128, surface=surface)
    assert sample.surface == surface


def test_non_square_frames_keep_their_width_and_height():
    sample = make_sample(21, width=800, height=600, good=False)
    assert sample.image.shape == (600, 800, 3) and sample.image.dtype == np.uint8
    assert sample.detections.image_wh == (800, 600)
    assert np.all(sample.detections.xyxy[:, [0, 2]] <= 800)
    assert np.all(sample.detections.xyxy[:, [1, 3]] <= 600)


def test_an_unknown_surface_is_refused_naming_the_choices():
    with pytest.raises(ConfigError, match="metal, pcb, foil"):
        make_sample(0, surface="wood")


def test_frames_too_small_to_hold_a_defect_are_refused():
    with pytest.raises(ConfigError, match="at least 64x64"):
        make_sample(0, width=32, height=640)


# --- the dataset on disk ------------------------------------------------------------------------


def test_dataset_has_yolo_folders_and_one_label_file_per_image(dataset):
    for split in ("train", "val"):
        images = sorted(p.stem for p in (dataset / "images" / split).glob("*.jpg"))
        labels = sorted(p.stem for p in (dataset / "labels" / split).glob("*.txt"))
        assert images and images == labels
    image = cv2.imread(str(next((dataset / "images" / "train").glob("*.jpg"))))
    assert image.shape == (150, 200, 3)


def test_labels_are_class_and_normalised_box_with_eight_decimals(dataset):
    lines = [
        line for path in dataset.glob("labels/*/*.txt") for line in path.read_text().splitlines()
    ]
    assert lines
    for line in lines:
        class_id, *numbers = line.split()
        assert int(class_id) in NAMES
        assert all(len(n.split(".")[1]) == 8 for n in numbers)
        cx, cy, w, h = map(float, numbers)
        assert 0 < w <= 1 and 0 < h <= 1
        assert cx - w / 2 >= -1e-6 and cx + w / 2 <= 1 + 1e-6
        assert cy - h / 2 >= -1e-6 and cy + h / 2 <= 1 + 1e-6


def test_good_parts_get_an_empty_label_file(dataset):
    sizes = [p.stat().st_size for p in dataset.glob("labels/*/*.txt")]
    assert 0 in sizes and any(sizes)


def test_data_yaml_points_at_the_dataset_and_names_the_five_classes(dataset):
    text = (dataset / "data.yaml").read_text()
    assert text.startswith("# Synthetic defects: qc synth --n ")  # how to make it again
    config = yaml.safe_load(text)
    assert config["path"] == str(dataset.resolve())
    assert (config["train"], config["val"]) == ("images/train", "images/val")
    assert config["names"] == NAMES == CLASS_NAMES
    assert config["nc"] == len(NAMES)


def test_validation_takes_every_fifth_image_starting_with_the_first(dataset):
    val = sorted(p.stem for p in (dataset / "images" / "val").iterdir())
    assert val == ["synth_000000", "synth_000005", "synth_000010"]
    assert [i for i in range(20) if is_val(i, 0.25)] == [0, 4, 8, 12, 16]
    assert not any(is_val(i, 0.0) for i in range(20))


def test_png_is_written_when_asked_for(tmp_path):
    write_dataset(tmp_path, n=2, seed=0, width=96, height=64, image_format="png")
    assert len(list(tmp_path.glob("images/*/*.png"))) == 2


def test_an_existing_dataset_is_only_replaced_when_asked(tmp_path):
    write_dataset(tmp_path, n=5, seed=0, width=96, height=64)
    (tmp_path / "notes.txt").write_text("keep me")
    with pytest.raises(DatasetError, match="--overwrite"):
        write_dataset(tmp_path, n=3, seed=0, width=96, height=64)
    write_dataset(tmp_path, n=3, seed=0, width=96, height=64, overwrite=True)
    assert len(list(tmp_path.glob("images/*/*.jpg"))) == 3  # no stale images left behind
    assert (tmp_path / "notes.txt").read_text() == "keep me"


# --- the command line ---------------------------------------------------------------------------


def test_qc_synth_writes_a_dataset(tmp_path):
    from qc.cli import app

    out = tmp_path / "synth"
    args = ["synth", "--out", str(out), "--n", "5", "--seed", "1",
            "--width", "128", "--height", "96", "--quiet"]
    result = CliRunner().invoke(app, args)
    assert result.exit_code == 0, result.output
    assert "wrote 5 images (4 train, 1 val" in result.output
    assert len(list(out.glob("images/*/*.jpg"))) == 5
    assert len(list(out.glob("labels/*/*.txt"))) == 5
    assert yaml.safe_load((out / "data.yaml").read_text())["names"] == NAMES


def test_qc_synth_help_explains_its_options():
    from qc.cli import app

    result = CliRunner().invoke(app, ["synth", "--help"], terminal_width=200)
    assert result.exit_code == 0
    for option in ("--out", "--n", "--seed", "--width", "--height", "--val-fraction"):
        assert option in result.output


def test_qc_synth_reports_a_bad_surface_as_a_qc_error(tmp_path):
    from qc.cli import app

    result = CliRunner().invoke(app, ["synth", "--out", str(tmp_path), "--surface", "wood"])
    assert result.exit_code != 0 and isinstance(result.exception, ConfigError)


# --- hygiene ------------------------------------------------------------------------------------


def test_synth_imports_neither_torch_nor_ultralytics():
    code = (
        "import sys, inspection.data.synth, qc.commands.synth; "
        "print(sorted(m for m in ('torch', 'ultralytics') if m in sys.modules))"
    )
    output = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True, cwd=Path(__file__).parents[1]).stdout
    assert output.strip() == "[]"


@pytest.mark.parametrize("module", [inspection.data.synth, surfaces, defects, optics, generator])
def test_docstring_examples_run(module):
    assert doctest.testmod(module).failed == 0


def test_denser_parts_carry_the_asked_number_of_defects():
    for seed in range(12):
        sample = make_sample(seed, width=320, height=320, good=False, defects=(4, 6))
        assert 4 <= len(sample.detections) <= 6, seed


def test_a_bad_defect_range_is_refused_with_the_fix(tmp_path):
    from qc.cli import app as qc_app

    result = CliRunner().invoke(qc_app, ["synth", "--out", str(tmp_path / "d"), "--n", "2", "--defects", "many"])
    assert result.exit_code != 0
