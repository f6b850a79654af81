"""COCO detection JSON: `images`, `annotations` with `bbox: [x, y, width, height]` in pixels,
`categories`; the image files in a folder beside it.

Example::

    from inspection.data.formats import Problem, coco

    for item in coco.read("data/bottles/annotations.json", images="data/bottles/images"):
        if not isinstance(item, Problem):
            print(item.path, item.detections.xyxy)
    coco.write(images, "export/bottles-coco", names={0: "scratch", 1: "dent"})

`read` takes one JSON file or a folder of them (one per split: a split named in the file or
folder name, like `instances_val2017.json` or Roboflow's `valid/_annotations.coco.json`, is
kept as the image's source split). Each `file_name` is looked for under `images` when given,
else beside the JSON, in `images/` beside it, and in `images/` one folder up. Class ids follow
the categories in id order; categories are matched by name across files.

Why not supervision's `DetectionDataset.from_coco` / `as_coco`: its boxes do round-trip
exactly, but its reader raises on the first bad annotation (a negative extent, a duplicate
`file_name`) and so fails the whole import, never checks that an image exists, decodes or
matches its declared size; and its writer needs every image opened for its size, which the
caller already knows. The JSON is read here with the standard library under the rules in
`_boxes`; boxes are written as float64 JSON numbers, so float32 boxes come back bit for bit.
tests/test_formats.py checks that pycocotools and supervision read our output to the same boxes.
"""

from __future__ import annotations

import json
import re
from collections import defaultdict
from collections.abc import Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any

import numpy as np

from inspection.data.formats._boxes import checked_detections
from inspection.data.formats._image_files import (
    copy_image,
    empty_output_dir,
    image_wh,
    unique_file_names,
)
from inspection.data.formats.labelled import LabelledImage, Problem
from inspection.errors import DatasetError, ImageError

_SPLIT_WORDS = re.compile(r"(?<![a-z])(train|val|valid|validation|test)(?![a-z])")
_SPLITS = {"train": "train", "val": "val", "valid": "val", "validation": "val", "test": "test"}


def read(
    source: str | Path, *, images: str | Path | None = None
) -> Iterator[LabelledImage | Problem]:
    """Labelled images of one COCO JSON, or of every COCO JSON under a folder."""
    loaded = _load_all(Path(source))
    names = _class_names(loaded)
    index_of = {name: index for index, name in names.items()}
    images_root = Path(images) if images is not None else None
    seen: set[Path] = set()
    for file, data in loaded:
        yield from _read_file(
            file, data, names=names, index_of=index_of, images_root=images_root, seen=seen
        )


def _read_file(
    file: Path,
    data: dict[str, Any],
    *,
    names: dict[int, str],
    index_of: dict[str, int],
    images_root: Path | None,
    seen: set[Path],
) -> Iterator[LabelledImage | Problem]:
    category_names = {c.get("id"): str(c.get("name")) for c in data.get("categories") or []}
    by_image: dict[Any, list[dict]] = defaultdict(list)
    for annotation in data.get("annotations") or []:
        by_image[annotation.get("image_id")].append(annotation)
    split = _split_of(file)
    image_ids = set()
    for entry in data.get("images") or []:
        image_ids.add(entry.get("id"))
        yield _read_image(
            file,
            entry,
            by_image.get(entry.get("id"), []),
            names=names,
            category_index={cid: index_of[name] for cid, name in category_names.items()},
            images_root=images_root,
            split=split,
            seen=seen,
        )
    for image_id in sorted(set(by_image) - image_ids, key=str):
        yield Problem(
            file=str(file),
            kind="bad_label",
            message=f"annotations refer to image id {image_id!r}, which is not in 'images'; "
            "add the image entry or delete those annotations",
        )


def _read_image(
    file: Path,
    entry: Mapping[str, Any],
    annotations: list[dict],
    *,
    names: dict[int, str],
    category_index: dict[Any, int],
    images_root: Path | None,
    split: str | None,
    seen: set[Path],
) -> LabelledImage | Problem:
    file_name = entry.get("file_name")
    if not isinstance(file_name, str) or not file_name:
        return Problem(
            file=str(file),
            kind="bad_label",
            message=f"image id {entry.get('id')!r} has no file_name; add it",
        )

    def problem(kind: str, message: str, *, image: str | None = file_name) -> Problem:
        return Problem(file=str(file), kind=kind, message=message, image=image)

    path = _find_image(file_name, json_file=file, images_root=images_root)
    if path is None:
        where = images_root or file.parent
        return problem(
            "missing_image",
            f"image {file_name} not found under {where}; pass the image folder (--images)",
        )
    if path in seen:
        return problem("duplicate", f"image {file_name} is listed twice; the first entry was kept")
    seen.add(path)
    try:
        size = image_wh(path)
    except ImageError as error:
        return Problem(
            file=str(path), kind="unreadable_image", message=f"{error}; fix or delete it"
        )
    declared = (entry.get("width"), entry.get("height"))
    if declared not in ((None, None), size):
        return problem(
            "size_mismatch",
            f"image {file_name} is {size[0]}x{size[1]} but the JSON says "
            f"{declared[0]}x{declared[1]}; its boxes would be misplaced: fix width and height "
            "or the image",
            image=str(path),
        )

    boxes, classes, refs, problems = [], [], [], []
    for annotation in annotations:
        ref = f"annotation {annotation.get('id', '?')} of {file_name}"
        bbox = annotation.get("bbox")
        if not (isinstance(bbox, list) and len(bbox) == 4 and all(_is_number(v) for v in bbox)):
            return problem("bad_label", f"{ref}: bbox must be [x, y, width, height]; fix it")
        category = annotation.get("category_id")
        if category not in category_index:
            return problem(
                "unknown_class",
                f"{ref}: category_id {category!r} is not in 'categories'; fix the annotation "
                "or add the category",
            )
        if annotation.get("iscrowd"):
            problems.append(
                Problem(
                    file=str(file),
                    kind="crowd_box",
                    message=f"{ref}: a crowd region (iscrowd=1) is not a box to learn from and "
                    "was left out",
                    skipped=False,
                    image=str(path),
                )
            )
            continue
        x, y, w, h = (float(v) for v in bbox)
        boxes.append([x, y, x + w, y + h])
        classes.append(category_index[category])
        refs.append(ref)
    detections, box_problems = checked_detections(
        xyxy=np.array(boxes, dtype=np.float64),
        class_id=np.array(classes, dtype=np.int64),
        names=names,
        image_wh=size,
        file=str(file),
        image=str(path),
        refs=refs,
    )
    if detections is None:
        return box_problems[0]
    lineage: dict[str, Any] = {
        "source_file": str(file),
        "source_image": str(path),
        "coco_image_id": entry.get("id"),
    }
    if split:
        lineage["source_split"] = split
    return LabelledImage(
        path=path,
        detections=detections,
        lineage=lineage,
        split=split,
        problems=(*problems, *box_problems),
    )


def write(images: Iterable[LabelledImage], out: str | Path, *, names: Mapping[int, str]) -> Path:
    """Write COCO JSON and copies of the images into the new or empty folder `out`.

    Without splits: out/annotations.json and out/images/. With splits: one
    out/annotations/<split>.json each, file names `<split>/<name>` under out/images/.
    Category ids are class id + 1 (COCO ids start at 1; some tools refuse 0). Returns `out`.
    """
    out = empty_output_dir(Path(out))
    images = list(images)
    categories = [
        {"id": int(i) + 1, "name": str(names[i]), "supercategory": "defect"} for i in sorted(names)
    ]
    splits = sorted({image.split for image in images if image.split})
    groups: list[tuple[str | None, list[LabelledImage]]] = [
        (split, [im for im in images if im.split == split]) for split in splits
    ]
    if not splits or any(image.split is None for image in images):
        groups.insert(0, (None, [im for im in images if im.split is None]))
    for split, group in groups:
        sub = f"{split}/" if split else ""
        coco_images: list[dict[str, Any]] = []
        annotations: list[dict[str, Any]] = []
        for image_id, (image, file_name) in enumerate(
            zip(group, unique_file_names(im.path for im in group), strict=True), start=1
        ):
            copy_image(image.path, out / "images" / f"{sub}{file_name}")
            width, height = image.image_wh
            coco_images.append(
                {"id": image_id, "file_name": f"{sub}{file_name}", "width": width, "height": height}
            )
            for class_id, box in zip(image.detections.class_id, image.detections.xyxy, strict=True):
                x1, y1, x2, y2 = (float(v) for v in box)
                annotations.append(
                    {
                        "id": len(annotations) + 1,
                        "image_id": image_id,
                        "category_id": int(class_id) + 1,
                        "bbox": [x1, y1, x2 - x1, y2 - y1],
                        "area": (x2 - x1) * (y2 - y1),
                        "iscrowd": 0,
                        "segmentation": [],
                    }
                )
        document = {
            "info": {"description": "exported by qc"},
            "licenses": [],
            "categories": categories,
            "images": coco_images,
            "annotations": annotations,
        }
        target = out / "annotations" / f"{split}.json" if split else out / "annotations.json"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps(document, indent=1), encoding="utf-8")
    return out


def _load_all(source: Path) -> list[tuple[Path, dict[str, Any]]]:
    """(file, document) of `source`, or of every COCO JSON under the folder `source`."""
    if source.is_file():
        return [(source, _load(source))]
    if not source.is_dir():
        raise DatasetError(f"{source} does not exist; give a COCO JSON file or its folder")
    loaded = []
    for path in sorted(source.rglob("*.json")):
        if any(part.startswith(".") for part in path.relative_to(source).parts):
            continue
        try:
            data = json.loads(path.read_text(encoding="utf-8"))
        except (OSError, ValueError):
            continue  # not every JSON in a folder is COCO; a COCO file given by name is checked
        if isinstance(data, dict) and isinstance(data.get("images"), list):
            loaded.append((path, data))
    if not loaded:
        raise DatasetError(
            f"{source} holds no COCO JSON (a file with an 'images' list); give the JSON file"
        )
    return loaded


def _load(file: Path) -> dict[str, Any]:
    try:
        data = json.loads(file.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise DatasetError(
            f"{file}: cannot read it as JSON ({error}); fix or re-export it"
        ) from error
    if not isinstance(data, dict) or not isinstance(data.get("images"), list):
        raise DatasetError(f"{file}: not a COCO file (no 'images' list); give a COCO JSON")
    return data


def _class_names(loaded: list[tuple[Path, dict[str, Any]]]) -> dict[int, str]:
    names: list[str] = []
    for file, data in loaded:
        categories = data.get("categories") or []
        if not all(isinstance(c, dict) and "id" in c and "name" in c for c in categories):
            raise DatasetError(f"{file}: every category needs an id and a name; fix 'categories'")
        for category in sorted(categories, key=lambda c: (str(type(c["id"])), c["id"])):
            if str(category["name"]) not in names:
                names.append(str(category["name"]))
    return dict(enumerate(names))


def _find_image(file_name: str, *, json_file: Path, images_root: Path | None) -> Path | None:
    relative = Path(file_name)
    if images_root is not None:
        candidates = [images_root / relative, images_root / relative.name]
    else:
        folder = json_file.parent
        candidates = [
            folder / relative,
            folder / "images" / relative,
            folder.parent / "images" / relative,
        ]
    return next((path for path in candidates if path.is_file()), None)


def _split_of(file: Path) -> str | None:
    for text in (file.stem.lower(), file.parent.name.lower()):
        match = _SPLIT_WORDS.search(text)
        if match:
            return _SPLITS[match.group(1)]
    return None


def _is_number(value: object) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)
