"""Training data is laid out so Ultralytics never writes into the source, wherever it lies."""

from __future__ import annotations

import os

import pytest

from inspection.errors import DatasetError
from training.data import prepare


@pytest.fixture
def source(tmp_path):
    from inspection.synth import write_dataset

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
    with pytest.raises(DatasetError, match="val folder .* does not exist; fix 'val:'"):
        prepare(source.data_yaml, workdir=tmp_path / "work")
