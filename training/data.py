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
from dataclasses import dataclass
from pathlib import Path

import yaml
from tqdm import tqdm

from inspection.data.formats._image_files import IMAGE_SUFFIXES
from inspection.data.formats.yolo import (
    DataYaml,
    SplitImage,
    label_path_for,
    read_data_yaml,
    reference_path_for,
)
from inspection.errors import DatasetError


@dataclass(frozen=True)
class TrainingData:
    yaml_path: Path  # data.yaml for Ultralytics, inside the work folder
    names: dict[int, str]
    content_hash: str  # sha256 over every image and label file, stable across copies
    source: str  # what the user named: a data.yaml path or a dataset version "name@v3"
    dataset_version: str | None = None  # "name@v3" for a versioned dataset


def prepare(data: str | Path, *, workdir: Path, references: bool = False) -> TrainingData:
    """Make `data` (a data.yaml path or a folder holding one, or a dataset version "name@v")
    trainable in `workdir`. With `references`, each image's reference is linked beside it
    (workdir/references/<split>/..., see formats/yolo.reference_path_for) and counted in the
    content hash; an image without one is a DatasetError."""
    text = str(data)
    if not text.endswith((".yaml", ".yml")) and not Path(text).exists():
        return _from_version(text, workdir=workdir, references=references)
    return _from_yaml(Path(text), workdir=workdir, references=references)


def _from_version(ref: str, *, workdir: Path, references: bool) -> TrainingData:
    from inspection.data.versions import materialise, open_version

    version = open_version(ref)
    if references and not version.has_references:
        raise DatasetError(f"{version.ref} holds no reference images; import it again with "
                           "--references DIR, or train a recipe without reference: true")
    return TrainingData(
        yaml_path=materialise(version, workdir),
        names=dict(version.names),
        content_hash=version.content_hash,
        source=ref,
        dataset_version=version.ref,
    )


def _from_yaml(path: Path, *, workdir: Path, references: bool) -> TrainingData:
    # Read as evaluation reads it (inspection.evaluate.scoring), so both see the same images.
    data = read_data_yaml(path)
    for split in ("train", "val"):
        if split not in data.splits:
            present = ", ".join(data.declared) or "none"
            raise DatasetError(
                f"{data.path}: no '{split}:' entry (splits in the file: {present}); training "
                f"needs both 'train:' and 'val:', e.g. '{split}: images/{split}'"
            )
    _refuse_undecodable(data)
    out_spec: dict = {"path": str(workdir.resolve()), "names": data.names}
    files: list[Path] = []
    for split, images in data.splits.items():
        if not images:
            where = ", ".join(str(entry) for entry in data.entries[split])
            raise DatasetError(f"{data.path}: no images in {where}; fix '{split}:'")
        several = len(data.entries[split]) > 1 or data.entries[split][0].suffix.lower() == ".txt"
        target_images = workdir / "images" / split
        target_labels = workdir / "labels" / split
        for image in images:
            if not image.path.is_file():
                raise DatasetError(f"{data.path}: {image.path}, listed in '{split}:', does not exist; "
                                   "fix the list or restore the file")
            relative = _work_name(image, prefixed=several)
            link_file(image.path, target_images / relative)
            files.append(image.path)
            label = label_path_for(image.path, root=Path(image.path.anchor))
            if label.is_file():
                link_file(label, (target_labels / relative).with_suffix(".txt"))
                files.append(label)
            if references:
                golden = reference_path_for(image.path)
                if golden is None:
                    raise DatasetError(
                        f"{image.path} has no reference image (looked for it under a "
                        "'references' or 'templates' folder beside 'images', same name); add "
                        "the golden part there, or train a recipe without reference: true")
                link_file(golden, (workdir / "references" / split / relative).with_suffix(golden.suffix))
                files.append(golden)
        out_spec[split] = f"images/{split}"
    yaml_path = workdir / "data.yaml"
    yaml_path.write_text(yaml.safe_dump(out_spec, sort_keys=False))
    return TrainingData(
        yaml_path=yaml_path,
        names=data.names,
        content_hash=content_hash(files, root=data.root),
        source=str(path),
    )


def _refuse_undecodable(data: DataYaml) -> None:
    # Evaluation skips these (the line cannot decode them); training on them would score
    # other images than evaluation does.
    odd = [image.path for images in data.splits.values() for image in images
           if image.path.suffix.lower() not in IMAGE_SUFFIXES]
    if odd:
        raise DatasetError(
            f"{data.path}: {odd[0]} is a {odd[0].suffix} image, which the line's decoder does not "
            f"read ({len(odd)} such file(s)); convert them to PNG or JPEG, or remove them"
        )


def _work_name(image: SplitImage, *, prefixed: bool) -> Path:
    """Where `image` goes under the work folder's images/<split>/: its path under its split
    entry, with the entry's index in front when the split has several entries (their files
    may share names). A folder called `images` is renamed, since Ultralytics finds the label
    by turning the last `images` folder of the path into `labels`."""
    parts = [f"{part}_" if part == "images" else part for part in image.relative.parts[:-1]]
    parts.append(image.relative.name)
    if prefixed:
        parts[0] = f"{image.entry}_{parts[0]}"
    return Path(*parts)


def link_file(source: Path, target: Path) -> None:
    """`target` made a symlink to `source` (its folders created, an earlier one replaced)."""
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
