"""Training data for Ultralytics, laid out so that nothing is written into the source.

Ultralytics writes `labels/<split>.cache` beside the label folders it reads, and resolves
folder symlinks to their targets first (`check_det_dataset` calls `Path.resolve()`). A
read-only source such as `../shared/datasets` or an immutable dataset version therefore gets
a work folder of real directories holding one symlink per file: Ultralytics reads through the
file links and writes its cache into the work folder.

Example::

    from training.data import prepare

    data = prepare("../shared/datasets/deeppcb/data.yaml", workdir=run_dir / "data")
    data.yaml_path, data.content_hash, data.names
"""

from __future__ import annotations

import hashlib
import os
from dataclasses import dataclass
from pathlib import Path

import yaml
from tqdm import tqdm

from inspection.errors import DatasetError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp"}
SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class TrainingData:
    yaml_path: Path  # data.yaml for Ultralytics, inside the work folder
    names: dict[int, str]
    content_hash: str  # sha256 over every image and label file, stable across copies
    source: str  # what the user named: a data.yaml path or a dataset version "name@v3"
    dataset_version: str | None = None  # "name@v3" for a versioned dataset
    splits: dict[str, Path] | None = None  # split -> images folder in the work folder


def prepare(data: str | Path, *, workdir: Path) -> TrainingData:
    """Make `data` (a data.yaml path, or a dataset version "name@v") trainable in `workdir`."""
    text = str(data)
    if not text.endswith((".yaml", ".yml")) and not Path(text).exists():
        return _from_version(text, workdir=workdir)
    return _from_yaml(Path(text), workdir=workdir)


def _from_version(reference: str, *, workdir: Path) -> TrainingData:
    from inspection.dataset import materialise, open_version

    version = open_version(reference)
    yaml_path = materialise(version, workdir)
    spec = yaml.safe_load(yaml_path.read_text())
    return TrainingData(
        yaml_path=yaml_path,
        names={int(k): str(v) for k, v in spec["names"].items()},
        content_hash=version.content_hash,
        source=reference,
        dataset_version=version.ref,
        splits={s: Path(spec["path"]) / spec[s] for s in SPLITS if spec.get(s)},
    )


def _from_yaml(path: Path, *, workdir: Path) -> TrainingData:
    if not path.is_file():
        raise DatasetError(f"{path}: no such data.yaml; pass a YOLO data.yaml or a dataset name@version")
    spec = yaml.safe_load(path.read_text()) or {}
    names = spec.get("names")
    if isinstance(names, list):
        names = dict(enumerate(names))
    if not names:
        raise DatasetError(f"{path}: no 'names' class map; add names: {{0: scratch, ...}}")
    # As Ultralytics reads it: `path:` relative to the data.yaml's folder, or that folder.
    root = (path.parent / spec["path"]).resolve() if spec.get("path") else path.parent.resolve()
    out_spec: dict = {"path": str(workdir.resolve()), "names": {int(k): str(v) for k, v in names.items()}}
    files: list[Path] = []
    splits: dict[str, Path] = {}
    for split in SPLITS:
        if not spec.get(split):
            continue
        images_dir = root / spec[split]
        if not images_dir.is_dir():
            raise DatasetError(f"{path}: {split} folder {images_dir} does not exist; fix '{split}:'")
        images = sorted(p for p in images_dir.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
        if not images:
            raise DatasetError(f"{path}: no images in {images_dir}")
        target_images = workdir / "images" / split
        target_labels = workdir / "labels" / split
        for image in images:
            label = _label_for(image)
            relative = image.relative_to(images_dir)
            _link(image, target_images / relative)
            files.append(image)
            if label.is_file():
                _link(label, (target_labels / relative).with_suffix(".txt"))
                files.append(label)
        out_spec[split] = f"images/{split}"
        splits[split] = target_images
    if "train" not in out_spec or "val" not in out_spec:
        raise DatasetError(f"{path}: needs both 'train:' and 'val:' image folders")
    yaml_path = workdir / "data.yaml"
    yaml_path.write_text(yaml.safe_dump(out_spec, sort_keys=False))
    return TrainingData(
        yaml_path=yaml_path,
        names=out_spec["names"],
        content_hash=content_hash(files, root=root),
        source=str(path),
        splits=splits,
    )


def _label_for(image: Path) -> Path:
    # Ultralytics' rule (img2label_paths): the last /images/ in the path becomes /labels/.
    text = str(image)
    head, sep, tail = text.rpartition(f"{os.sep}images{os.sep}")
    if not sep:
        return image.with_suffix(".txt")
    return Path(head + f"{os.sep}labels{os.sep}" + tail).with_suffix(".txt")


def _link(source: Path, target: Path) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    if target.is_symlink() or target.exists():
        target.unlink()
    target.symlink_to(source.resolve())


def content_hash(files: list[Path], *, root: Path) -> str:
    """sha256 over (relative path, file sha256) pairs: the same data gives the same hash
    wherever it lies."""
    digest = hashlib.sha256()
    for file in tqdm(sorted(files), desc="hashing data", unit="file", leave=False, disable=len(files) < 200):
        try:
            name = str(file.relative_to(root))
        except ValueError:  # a split folder outside the data.yaml's root
            name = f"{file.parent.parent.name}/{file.parent.name}/{file.name}"
        digest.update(name.encode())
        digest.update(hashlib.sha256(file.read_bytes()).digest())
    return digest.hexdigest()
