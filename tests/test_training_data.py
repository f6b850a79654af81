"""Training data is laid out so Ultralytics never writes into the source, wherever it lies."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
import yaml

from inspection.errors import DatasetError
from training.data import prepare


@pytest.fixture
def source(tmp_path):
    from inspection.data.synth import write_dataset

    summary = write_dataset(tmp_path / "src", n=5, seed=1, width=96, height=96)
    text = summary.data_yaml.read_text().replace(f"path: {summary.root}\n", "")  # like DeepPCB's
    summary.data_yaml.write_text(text)
    return summary


def test_a_relative_data_yaml_without_path_resolves_against_its_folder(source, tmp_path, monkeypatch):
    monkeypatch.chdir(source.root.parent)
    data = prepare(os.path.join("src", "data.yaml"), workdir=tmp_path / "work")
    linked = sorted((tmp_path / "work" / "images" / "train").iterdir())
    assert linked and all(p.is_symlink() and p.resolve().is_relative_to(source.root) for p in linked)
    assert (tmp_path / "work" / "images" / "train").is_symlink() is False  # real folders: caches stay here
    assert len(data.content_hash) == 64


def test_the_content_hash_does_not_depend_on_where_the_data_lies(source, tmp_path):
    import shutil

    copy = tmp_path / "copy"
    shutil.copytree(source.root, copy)
    first = prepare(source.data_yaml, workdir=tmp_path / "w1").content_hash
    assert prepare(copy / "data.yaml", workdir=tmp_path / "w2").content_hash == first


def test_a_missing_split_folder_names_the_key_to_fix(source, tmp_path):
    source.data_yaml.write_text(source.data_yaml.read_text().replace("images/val", "images/nope"))
    with pytest.raises(DatasetError, match=r"val folder .* does not exist; fix 'val:'"):
        prepare(source.data_yaml, workdir=tmp_path / "work")


def _image(path, shade=90, size=(64, 64)):
    import cv2
    import numpy as np

    path.parent.mkdir(parents=True, exist_ok=True)
    cv2.imwrite(str(path), np.full((size[1], size[0], 3), shade, np.uint8))
    return path


def _label(path, text="0 0.5 0.5 0.25 0.25\n"):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def _label_seen_by_ultralytics(image):
    """img2label_paths: the last /images/ of the path becomes /labels/, suffix .txt."""
    head, _, tail = str(image).rpartition(f"{os.sep}images{os.sep}")
    return os.path.splitext(f"{head}{os.sep}labels{os.sep}{tail}")[0] + ".txt"


# -- data.yaml problems are DatasetErrors naming the file, never tracebacks ----------------------


@pytest.mark.parametrize(
    ("text", "says"),
    [
        ("names: [scratch\ntrain: images/train\n", "cannot read it as YAML"),
        ("- scratch\n- dent\n", "expected a mapping"),
        ("names: abc\ntrain: images/train\nval: images/val\n", "'names' must list"),
        ("names: {0: a, 2: b}\ntrain: images/train\nval: images/val\n", "without gaps"),
        ("names: [a]\ntrain: {folder: images/train}\nval: images/val\n", "'train:' must be a folder"),
        ("names: [a]\ntrain: images/train\n", "no 'val:' entry"),
    ],
    ids=["bad-yaml", "top-level-list", "names-not-a-list", "names-with-a-gap", "train-a-mapping",
         "no-val"],
)
def test_a_bad_data_yaml_is_a_dataset_error_naming_the_file(tmp_path, text, says):
    _image(tmp_path / "src" / "images" / "train" / "a.png")
    _image(tmp_path / "src" / "images" / "val" / "b.png")
    data_yaml = tmp_path / "src" / "data.yaml"
    data_yaml.write_text(text)
    with pytest.raises(DatasetError, match=says) as raised:
        prepare(data_yaml, workdir=tmp_path / "work")
    assert str(data_yaml) in str(raised.value)


def test_a_folder_holding_a_data_yaml_trains_as_eval_reads_it(source, tmp_path):
    by_folder = prepare(source.root, workdir=tmp_path / "w1")
    by_file = prepare(source.data_yaml, workdir=tmp_path / "w2")
    assert by_folder.content_hash == by_file.content_hash and by_folder.names == by_file.names


def test_a_list_of_train_folders_is_laid_out_without_name_clashes(tmp_path):
    """Ultralytics allows `train: [a, b]`; two a.png from two folders both reach training,
    each with its own label where Ultralytics looks for it."""
    src = tmp_path / "src"
    for folder, box in (("line1", "0 0.5 0.5 0.25 0.25\n"), ("line2", "0 0.25 0.25 0.1 0.1\n")):
        _image(src / folder / "images" / "a.png")
        _label(src / folder / "labels" / "a.txt", box)
    _image(src / "line1" / "images" / "b.png")  # no label: background
    _image(src / "val" / "images" / "c.png")
    (src / "data.yaml").write_text(
        "names: [scratch]\ntrain: [line1/images, line2/images]\nval: val/images\n"
    )

    data = prepare(src / "data.yaml", workdir=tmp_path / "work")

    spec = yaml.safe_load(data.yaml_path.read_text())
    assert spec["train"] == "images/train" and spec["names"] == {0: "scratch"}
    linked = sorted((tmp_path / "work" / "images" / "train").rglob("*.png"))
    assert len(linked) == 3
    labels = {
        link.resolve().relative_to(src.resolve()).as_posix(): (
            Path(_label_seen_by_ultralytics(link)).read_text()
            if os.path.exists(_label_seen_by_ultralytics(link)) else None
        )
        for link in linked
    }
    assert labels == {
        "line1/images/a.png": "0 0.5 0.5 0.25 0.25\n",
        "line2/images/a.png": "0 0.25 0.25 0.1 0.1\n",
        "line1/images/b.png": None,
    }


def test_a_txt_list_of_images_keeps_labels_where_ultralytics_looks(tmp_path):
    """Entries of a .txt list lie under their own images/ folders; in the work folder that
    folder must not become a second `images` in the path, or the label would be looked up
    in the wrong place."""
    src = tmp_path / "src"
    _image(src / "images" / "train" / "a.png")
    _label(src / "labels" / "train" / "a.txt")
    _image(src / "images" / "val" / "b.png")
    (src / "train.txt").write_text("./images/train/a.png\n")
    (src / "data.yaml").write_text("names: [scratch]\ntrain: train.txt\nval: images/val\n")

    prepare(src / "data.yaml", workdir=tmp_path / "work")

    [link] = (tmp_path / "work" / "images" / "train").rglob("*.png")
    assert link.resolve() == (src / "images" / "train" / "a.png").resolve()
    assert Path(_label_seen_by_ultralytics(link)).read_text() == "0 0.5 0.5 0.25 0.25\n"


def test_images_the_line_cannot_decode_are_refused_with_the_fix(source, tmp_path):
    """Evaluation skips a .tif (the line's decoder reads JPEG, PNG and BMP), so training on
    it would score other images than evaluation does."""
    odd = source.root / "images" / "train" / "scan.tif"
    odd.write_bytes(b"II*\x00")
    with pytest.raises(DatasetError, match=r"scan\.tif.*convert them to PNG or JPEG"):
        prepare(source.data_yaml, workdir=tmp_path / "work")


# -- recipes and run folders ---------------------------------------------------------------------


def test_a_misspelt_augment_argument_is_refused_when_the_recipe_is_read(tmp_path):
    pytest.importorskip("albumentations")
    from inspection.errors import ConfigError
    from training.recipe import Recipe

    path = tmp_path / "r.yaml"
    path.write_text(
        "augment:\n"
        "  - {name: GaussNoise, p: 0.3, std_range: [0.02, 0.08]}\n"
        "  - {name: RandomBrightnessContrast, p: 0.5, brightness_limt: 0.2}\n"
    )
    with pytest.raises(ConfigError, match=r"step 2 \(RandomBrightnessContrast\).*brightness_limt") as raised:
        Recipe.load(path)
    assert str(path) in str(raised.value)


def test_command_line_overrides_are_checked_like_the_recipe(qc_home):
    from inspection.errors import ConfigError
    from qc.commands.train import train

    with pytest.raises(ConfigError, match=r"--fraction.*fraction: Input should be less than or equal to 1"):
        train(data="d.yaml", fraction=2.0)
    with pytest.raises(ConfigError, match=r"time_hours: Input should be greater than 0"):
        train(data="d.yaml", time_hours=0.0)


def test_a_run_folder_left_by_an_unfinished_setup_says_to_train_again(tmp_path):
    from inspection.errors import ConfigError
    from training.recipe import Recipe
    from training.trainer import Run

    folder = tmp_path / "tiny-20250101-000000"
    folder.mkdir()
    (folder / "recipe.yaml").write_text(Recipe().to_yaml())  # killed before dataset.json
    with pytest.raises(ConfigError, match=r"setup did not finish .*delete it and train again") as raised:
        Run.open(folder)
    assert str(folder) in str(raised.value)
