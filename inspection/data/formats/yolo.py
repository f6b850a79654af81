"""YOLO folders: images/ beside labels/, one `class x_center y_center width height` line per
box in fractions of the image size, class names in data.yaml or classes.txt.

Example::

    from inspection.data.formats import Problem, yolo

    for item in yolo.read("data/bottles"):            # or "data/bottles/data.yaml"
        if isinstance(item, Problem):
            print("skipped:", item)
        else:
            print(item.path, item.detections.xyxy)
    yolo.write(images, "export/bottles", names={0: "scratch", 1: "dent"})

Layouts read: `images/` + `labels/` with or without split folders (`images/train/...`),
Roboflow's `train/images` + `train/labels`, and images with their .txt beside them (Label
Studio's YOLO export). The label of `.../images/x/a.png` is `.../labels/x/a.txt`: the last
`images` folder becomes `labels`, as Ultralytics finds it.

Why not supervision's `DetectionDataset.from_yolo` / `as_yolo`: measured here (supervision
0.31), its writer keeps 5 decimals, so a box moves by up to 0.013 px on a 1937 px image (we
need 1e-3); its reader raises on the first bad label file and so fails the whole import, and
it reads a missing label file as "no defects" without saying so. The format is a few lines
of text; this module reads it with the rules in `_boxes` and writes 8 decimals (1e-4 px at
10,000 px). tests/test_formats.py checks that supervision reads our output to the same boxes.
"""

from __future__ import annotations

import os
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import cast

import numpy as np
import yaml

from inspection.data.formats._boxes import checked_detections
from inspection.data.formats._image_files import (
    copy_image,
    empty_output_dir,
    find_images,
    image_wh,
    is_image,
    unique_file_names,
)
from inspection.data.formats.labelled import LabelledImage, Problem
from inspection.detections import Detections
from inspection.errors import DatasetError, ImageError

_SPLIT_FOLDERS = {
    "train": "train",
    "val": "val",
    "valid": "val",
    "validation": "val",
    "test": "test",
}


def read(
    source: str | Path,
    *,
    names: Sequence[str] | None = None,
    allow_missing_labels: bool = False,
) -> Iterator[LabelledImage | Problem]:
    """Labelled images of a YOLO folder (or of the folder of a data.yaml), one per image.

    `names` are used only when the folder has neither data.yaml nor classes.txt. An image
    without a label file is a `missing_label` problem, unless `allow_missing_labels`, which
    reads it as an image without defects (write an empty .txt for those instead: it says so
    explicitly).
    """
    root, class_names = _root_and_names(Path(source), names=names)
    used_labels: set[Path] = set()
    for image_path in find_images(root):
        if _is_reference(image_path, root=root):
            continue  # a golden part, stored with its image (reference_path_for), not a frame
        label_path = label_path_for(image_path, root=root)
        used_labels.add(label_path)
        item = _read_one(
            image_path, label_path, root=root, names=class_names, allow_missing=allow_missing_labels
        )
        yield item
    for orphan in sorted(_label_files(root) - used_labels):
        yield Problem(
            file=str(orphan),
            kind="orphan_label",
            message="label file without an image of the same name; add the image or delete it",
        )


def _read_one(
    image_path: Path, label_path: Path, *, root: Path, names: dict[int, str], allow_missing: bool
) -> LabelledImage | Problem:
    if label_path.is_file():
        text = label_path.read_text(encoding="utf-8", errors="replace")
    elif allow_missing:
        text = ""
    else:
        return Problem(
            file=str(label_path),
            kind="missing_label",
            message=f"no label file for {image_path.name}; write one, an empty one if the image "
            "shows no defect",
            image=str(image_path),
        )
    try:
        size = image_wh(image_path)
    except ImageError as error:
        return Problem(
            file=str(image_path), kind="unreadable_image", message=f"{error}; fix or delete it"
        )
    detections, problems = parse_labels(
        text, image_wh=size, names=names, file=str(label_path), image=str(image_path)
    )
    if detections is None:
        return problems[0]
    lineage = {"source_file": str(label_path), "source_image": str(image_path)}
    split = _split_of(image_path.relative_to(root))
    if split:
        lineage["source_split"] = split
    return LabelledImage(
        path=image_path, detections=detections, lineage=lineage, split=split, problems=tuple(problems)
    )


def parse_labels(
    text: str,
    *,
    image_wh: tuple[int, int],
    names: Mapping[int, str],
    file: str,
    image: str | None = None,
) -> tuple[Detections | None, list[Problem]]:
    """Boxes of one YOLO label file in pixels, checked; None when the image must be left out.

    Lines of 5 numbers are boxes; a 6th (a score from `save_txt`) is ignored; 7 or more are a
    segmentation polygon, read as its bounding box, as Ultralytics trains detection on it.
    """
    width, height = image_wh
    boxes, classes, refs = [], [], []
    for number, line in enumerate(text.splitlines(), start=1):
        tokens = line.split()
        if not tokens:
            continue
        try:
            values = [float(token) for token in tokens]
        except ValueError:
            values = []
        if len(values) < 5 or not values[0].is_integer():
            return None, [
                Problem(
                    file=file,
                    kind="bad_label",
                    message=f"line {number}: expected 'class x_center y_center width height' "
                    f"(a whole class id and 4 numbers), got {line.strip()[:60]!r}; fix the line",
                    image=image,
                )
            ]
        classes.append(int(values[0]))
        refs.append(f"line {number}")
        if len(values) <= 6:
            xc, yc, w, h = values[1:5]
            boxes.append([xc - w / 2, yc - h / 2, xc + w / 2, yc + h / 2])
        else:
            points = values[1:] if len(values) % 2 else values[1:-1]
            xs, ys = points[0::2], points[1::2]
            boxes.append([min(xs), min(ys), max(xs), max(ys)])
    xyxy = np.array(boxes, dtype=np.float64).reshape(-1, 4) * [width, height, width, height]
    return checked_detections(
        xyxy=xyxy,
        class_id=np.array(classes, dtype=np.int64),
        names=names,
        image_wh=image_wh,
        file=file,
        image=image,
        refs=refs,
    )


def label_text(detections: Detections) -> str:
    """The YOLO label file for `detections`; 8 decimals keep boxes to 1e-4 px at 10,000 px."""
    width, height = detections.image_wh
    lines = []
    # tolist(): plain floats (numpy's stubs type a row of a 2-D array as a scalar)
    rows = cast("list[list[float]]", detections.xyxy.astype(np.float64).tolist())
    for class_id, box in zip(detections.class_id, rows, strict=True):
        x1, y1, x2, y2 = box
        xc, yc = (x1 + x2) / 2 / width, (y1 + y2) / 2 / height
        w, h = (x2 - x1) / width, (y2 - y1) / height
        lines.append(f"{int(class_id)} {xc:.8f} {yc:.8f} {w:.8f} {h:.8f}\n")
    return "".join(lines)


def write(
    images: Iterable[LabelledImage],
    out: str | Path,
    *,
    names: Mapping[int, str],
) -> Path:
    """Write a YOLO folder into the new or empty folder `out`; returns its data.yaml.

    Images are copied byte for byte. Images with a split go to images/<split>/, the others
    to images/. data.yaml has no `path:`, so Ultralytics reads the folder wherever it moves.
    """
    out = empty_output_dir(Path(out))
    images = list(images)
    splits = sorted({image.split for image in images if image.split})
    for split in [None, *splits]:
        group = [image for image in images if image.split == split]
        sub = Path(split) if split else Path()
        for image, file_name in zip(group, unique_file_names(image.path for image in group), strict=True):
            copy_image(image.path, out / "images" / sub / file_name)
            label = out / "labels" / sub / (Path(file_name).stem + ".txt")
            label.parent.mkdir(parents=True, exist_ok=True)
            label.write_text(label_text(image.detections), encoding="utf-8")
    data_yaml = out / "data.yaml"
    write_data_yaml(data_yaml, names=names, splits=splits)
    return data_yaml


def write_data_yaml(
    path: Path, *, names: Mapping[int, str], splits: Sequence[str], root: Path | None = None
) -> None:
    """Ultralytics' data.yaml. Without splits, the one image folder serves as train and val."""
    data: dict = {}
    if root is not None:
        data["path"] = str(root)
    folders = {split: f"images/{split}" for split in splits}
    data["train"] = folders.get("train", "images")
    data["val"] = folders.get("val", "images")
    if "test" in folders:
        data["test"] = folders["test"]
    data["nc"] = len(names)
    data["names"] = {int(i): str(names[i]) for i in sorted(names)}
    path.write_text(yaml.safe_dump(data, sort_keys=False, allow_unicode=True), encoding="utf-8")


@dataclass(frozen=True)
class SplitImage:
    """One image a data.yaml split names."""

    path: Path  # the image file, absolute
    relative: Path  # its path under the split entry it came from (a folder, or a .txt's folder)
    entry: int  # which entry of the split's list it came from, 0 for a single entry


@dataclass(frozen=True)
class DataYaml:
    """An Ultralytics data.yaml as Ultralytics reads it: class names and each split's images.

    Image files of every type are listed, the ones the line's decoder cannot read (tif,
    webp...) included, so that callers report them rather than silently leave them out.
    """

    path: Path  # the data.yaml file
    root: Path  # where split entries are resolved: `path:`, or the data.yaml's folder
    names: dict[int, str]
    declared: tuple[str, ...]  # the splits the file names, in train, val, test order
    splits: dict[str, tuple[SplitImage, ...]]  # split -> its images (the splits read)
    entries: dict[str, tuple[Path, ...]]  # split -> the folders or .txt lists it names


DATA_YAML_SPLITS = ("train", "val", "test")


def read_data_yaml(source: str | Path, *, splits: Sequence[str] = DATA_YAML_SPLITS) -> DataYaml:
    """Read an Ultralytics data.yaml (or the data.yaml in the folder `source`).

    `path:` is relative to the data.yaml's folder, which it defaults to. Each split (of
    `splits`, where the file names it) may be a folder, a list of folders, or a .txt list of
    image files (lines relative to the .txt's folder, or absolute). `DatasetError` names the
    file and the key for bad YAML, bad `names:` and split locations that do not exist.
    """
    path = Path(source)
    if path.is_dir():
        path = path / "data.yaml"
    if not path.is_file():
        raise DatasetError(
            f"{path}: no such data.yaml; pass a YOLO data.yaml or a dataset version NAME@VERSION"
        )
    spec = _load_yaml(path)
    names = class_names_from_yaml(spec.get("names"), file=path)
    declared_root = spec.get("path")
    if declared_root is not None and not isinstance(declared_root, str):
        raise DatasetError(f"{path}: 'path:' must be a folder, got {declared_root!r}; fix the file")
    root = (path.absolute().parent / (declared_root or ".")).resolve()
    declared = tuple(split for split in DATA_YAML_SPLITS if spec.get(split))
    images: dict[str, tuple[SplitImage, ...]] = {}
    entries: dict[str, tuple[Path, ...]] = {}
    for split in declared:
        if split not in splits:
            continue
        value = spec[split]
        listed = value if isinstance(value, list) else [value]
        if not all(isinstance(entry, str) and entry for entry in listed):
            raise DatasetError(
                f"{path}: '{split}:' must be a folder, a list of folders or a .txt list of "
                f"images, got {value!r}; fix the file"
            )
        locations = tuple(Path(os.path.normpath(root / entry)) for entry in listed)
        found: list[SplitImage] = []
        for index, location in enumerate(locations):
            found += _entry_images(location, index=index, data_yaml=path, split=split)
        images[split] = tuple(found)
        entries[split] = locations
    return DataYaml(
        path=path, root=root, names=names, declared=declared, splits=images, entries=entries
    )


def _entry_images(location: Path, *, index: int, data_yaml: Path, split: str) -> list[SplitImage]:
    if location.is_dir():
        return [
            SplitImage(path=image, relative=image.relative_to(location), entry=index)
            for image in find_images(location)
        ]
    if location.is_file() and location.suffix.lower() == ".txt":  # Ultralytics' image list
        folder = location.parent
        found = []
        for raw_line in location.read_text(encoding="utf-8", errors="replace").splitlines():
            line = raw_line.strip()
            if not line or not is_image(Path(line)):
                continue
            image = Path(os.path.normpath(folder / line))  # an absolute line stays as it is
            try:
                relative = image.relative_to(folder)
            except ValueError:  # listed from elsewhere: its whole path keeps it apart
                relative = Path(*image.parts[1:])
            found.append(SplitImage(path=image, relative=relative, entry=index))
        return found
    raise DatasetError(
        f"{data_yaml}: the {split} folder {location} does not exist; fix '{split}:' (it is "
        "relative to 'path:', or to the data.yaml's folder when there is no 'path:')"
    )


def label_path_for(image_path: Path, *, root: Path) -> Path:
    """Where Ultralytics looks for the label of `image_path`: the last `images` folder becomes
    `labels`; an image outside any `images` folder has its label beside it."""
    parts = image_path.relative_to(root).parts
    folders = list(parts[:-1])
    if "images" in folders:
        index = len(folders) - 1 - folders[::-1].index("images")
        folders[index] = "labels"
    return root.joinpath(*folders, Path(parts[-1]).stem + ".txt")


# Folders that hold each image's reference (its golden, defect-free part) under the same
# relative path as `images`: qc synth --references writes `references`, DeepPCB ships `templates`.
REFERENCE_FOLDERS = ("references", "templates")


def reference_path_for(image_path: Path) -> Path | None:
    """The reference image of `image_path`: the same path with its last `images` folder
    replaced by `references` (or `templates`), with any image suffix; None when there is none."""
    from inspection.data.formats._image_files import IMAGE_SUFFIXES

    parts = list(image_path.parts)
    folders = parts[:-1]
    if "images" not in folders:
        return None
    index = len(folders) - 1 - folders[::-1].index("images")
    for name in REFERENCE_FOLDERS:
        parts[index] = name
        candidate = Path(*parts)
        if candidate.is_file():
            return candidate
        for suffix in IMAGE_SUFFIXES:
            other = candidate.with_suffix(suffix)
            if other.is_file():
                return other
    return None


def _is_reference(image_path: Path, *, root: Path) -> bool:
    """Whether `image_path` sits in a reference folder beside `images/` (references/, templates/):
    the golden parts of the frames, which have no labels of their own."""
    parts = image_path.relative_to(root).parts
    return len(parts) > 1 and parts[0] in REFERENCE_FOLDERS and (root / "images").is_dir()


def _split_of(relative: Path) -> str | None:
    for part in relative.parts[:-1]:
        if part.lower() in _SPLIT_FOLDERS:
            return _SPLIT_FOLDERS[part.lower()]
    return None


def _label_files(root: Path) -> set[Path]:
    return {
        path
        for path in root.rglob("*.txt")
        if "labels" in path.relative_to(root).parts[:-1]
        and not any(part.startswith(".") for part in path.relative_to(root).parts)
    }


def _root_and_names(source: Path, *, names: Sequence[str] | None) -> tuple[Path, dict[int, str]]:
    if source.suffix.lower() in (".yaml", ".yml") and source.is_file():
        data_yaml, root = source, source.parent
    elif source.is_dir():
        data_yaml, root = source / "data.yaml", source
    else:
        raise DatasetError(f"{source} is not a YOLO folder or data.yaml; check the path")
    if data_yaml.is_file():
        data = _load_yaml(data_yaml)
        declared = data.get("path")
        if declared and Path(declared).is_absolute() and Path(declared).is_dir():
            root = Path(declared)
        return root, class_names_from_yaml(data.get("names"), file=data_yaml)
    classes_txt = root / "classes.txt"
    if classes_txt.is_file():
        lines = classes_txt.read_text(encoding="utf-8").splitlines()
        return root, {
            i: line.strip() for i, line in enumerate(line for line in lines if line.strip())
        }
    if names:
        return root, dict(enumerate(names))
    raise DatasetError(
        f"{root} has no data.yaml or classes.txt, so its class ids have no names; add a "
        "data.yaml with 'names: [scratch, dent]' (in class id order) or a classes.txt"
    )


def _load_yaml(path: Path) -> dict:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as error:
        raise DatasetError(f"{path}: cannot read it as YAML ({error}); fix the file") from error
    if not isinstance(data, dict):
        raise DatasetError(f"{path}: expected a mapping with 'names:'; fix the file")
    return data


def class_names_from_yaml(names: object, *, file: Path) -> dict[int, str]:
    """Ultralytics' `names:`, a list or a {id: name} mapping, as {0: name, 1: name, ...}."""
    if isinstance(names, list):
        return {i: str(name) for i, name in enumerate(names)}
    if isinstance(names, dict):
        try:
            mapping = {int(key): str(value) for key, value in names.items()}
        except (TypeError, ValueError):
            mapping = {}
        if mapping and sorted(mapping) == list(range(len(mapping))):
            return mapping
    raise DatasetError(
        f"{file}: 'names' must list the class names in class id order, as a list or as "
        "{0: name, 1: name, ...} without gaps; fix the file"
    )
