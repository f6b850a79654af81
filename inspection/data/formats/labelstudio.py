"""Label Studio's JSON export: tasks[].annotations[].result[] with `rectanglelabels` regions
whose x, y, width, height are percent of the image, the image named in `task.data`.

Example::

    from inspection.data.formats import Problem, labelstudio

    for item in labelstudio.read("export.json", images="/srv/label-studio/media"):
        if isinstance(item, Problem):
            print(item)                      # "export.json: task 12: image ... not found ..."
        else:
            print(item.lineage["labelstudio_task_id"], item.detections.class_names)
    labelstudio.write(images, "to-review", names={0: "scratch", 1: "dent"})

Per task, the latest submitted annotation (not cancelled or skipped) is the truth: it is the
last correction QC staff made. Tasks nobody annotated are left out (a `not_annotated`
problem), never read as "no defects". Predictions are not labels and are ignored.

Images are found, without any network, under `images` (default: the JSON's folder):
`/data/upload/3/ab12cd34-frame.png` as `<images>/upload/3/...`, `<images>/3/...` or by file
name; `/data/local-files/?d=line1/frame.png` as `<images>/line1/frame.png`; a URL or a path
as `<images>/<its path>` or by file name; an absolute path as itself.

A task whose data holds `reference` (a station's golden part, found as the image is) gives its
image that reference, for reference recipes.

Rotated rectangles become their upright bounding box (reported); polygons their bounding
box; brushes and key points cannot become boxes, so their image is left out. Choices and text
areas (a verdict, a comment) are not regions and are ignored.

Why not `label_studio_sdk.converter`: it needs the project's label config, downloads images
over the network, logs and skips bad tasks instead of reporting them, converts every
annotation of a task (so corrected images appear twice), and rotates boxes in percent space,
which skews them on non-square images. Percent to pixels is one multiplication, done here in
float64, so boxes round-trip to float32 precision; tests/test_formats.py checks the SDK's
converter reads our output to the same boxes.
"""

from __future__ import annotations

import json
import math
from collections.abc import Iterable, Iterator, Mapping, Sequence
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

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

LOCAL_FILES_PREFIX = "/data/local-files/?d="
_BOX_TYPES = {"rectanglelabels": "rectanglelabels", "polygonlabels": "polygonlabels"}
_UNSUPPORTED_REGIONS = {"brushlabels", "keypointlabels", "ellipselabels", "brush", "keypoint"}
_IMAGE_KEYS = ("image", "img", "image_url", "url", "frame")


def read(
    source: str | Path,
    *,
    images: str | Path | None = None,
    names: Sequence[str] | None = None,
    image_key: str | None = None,
) -> Iterator[LabelledImage | Problem]:
    """Labelled images of a Label Studio JSON export, one per annotated task.

    Class ids follow `names` when given (keep them stable across versions), then new labels
    in sorted order. `image_key` is the `task.data` key holding the image, when it is not one
    of image, img, image_url, url, frame.
    """
    source = Path(source)
    tasks = _load_tasks(source)
    images_root = Path(images) if images is not None else source.parent
    chosen = [(task, _chosen_annotation(task)) for task in tasks]
    class_names = list(names or [])
    found = {
        label
        for _, annotation in chosen
        if annotation
        for result in annotation.get("result") or []
        for label in _labels_of(result)
    }
    class_names += sorted(found - set(class_names))
    names_map = dict(enumerate(class_names))
    for task, annotation in chosen:
        yield _read_task(
            task,
            annotation,
            source=source,
            images_root=images_root,
            names=names_map,
            image_key=image_key,
        )


def _read_task(
    task: Mapping[str, Any],
    annotation: Mapping[str, Any] | None,
    *,
    source: Path,
    images_root: Path,
    names: dict[int, str],
    image_key: str | None,
) -> LabelledImage | Problem:
    task_id = task.get("id")
    data = task.get("data") or {}

    def problem(kind: str, message: str, image: str | None = None) -> Problem:
        return Problem(
            file=str(source), kind=kind, message=f"task {task_id}: {message}", image=image
        )

    reference = _image_reference(data, image_key)
    if reference is None:
        return problem("bad_label", "no image in task.data; name its key with --image-key")
    if annotation is None:
        return problem(
            "not_annotated",
            "no submitted annotation, so it was left out; label it in Label Studio",
            image=reference,
        )
    path = resolve_image(reference, images_root=images_root)
    if path is None:
        return problem(
            "missing_image",
            f"image {reference} not found under {images_root}; pass the folder holding Label "
            "Studio's media or local files (--images)",
            image=reference,
        )
    try:
        size = image_wh(path)
    except ImageError as error:
        return Problem(
            file=str(path), kind="unreadable_image", message=f"{error}; fix or delete it"
        )

    width, height = size
    boxes, classes, refs, problems = [], [], [], []
    index_of = {name: i for i, name in names.items()}
    for result in annotation.get("result") or []:
        kind = result.get("type")
        value = result.get("value") or {}
        ref = f"task {task_id} region {result.get('id', '?')}"
        if kind in _UNSUPPORTED_REGIONS or any(key in value for key in _UNSUPPORTED_REGIONS):
            return problem(
                "unsupported_region",
                f"region {result.get('id', '?')} is a {kind}, which cannot become a box; draw "
                "a rectangle instead",
                image=str(path),
            )
        labels = _labels_of(result)
        if kind not in _BOX_TYPES and not labels:
            continue  # a choice, a text area: not a region
        declared = (result.get("original_width"), result.get("original_height"))
        if declared not in ((None, None), size):
            return problem(
                "size_mismatch",
                f"image {path.name} is {width}x{height} but Label Studio saw it as "
                f"{declared[0]}x{declared[1]}; is it the same image?",
                image=str(path),
            )
        if len(labels) != 1:
            return problem("bad_label", f"region {result.get('id', '?')} needs exactly one label")
        try:
            box, rotated = _box_in_pixels(value, kind=kind, size=size)
        except (KeyError, TypeError, ValueError):
            return problem(
                "bad_label", f"region {result.get('id', '?')}: no usable x, y, width, height"
            )
        if rotated:
            problems.append(
                Problem(
                    file=str(source),
                    kind="rotated_box",
                    message=f"{ref}: a rotated rectangle was stored as its upright bounding box",
                    skipped=False,
                    image=str(path),
                )
            )
        boxes.append(box)
        classes.append(index_of[labels[0]])
        refs.append(ref)
    detections, box_problems = checked_detections(
        xyxy=np.array(boxes, dtype=np.float64),
        class_id=np.array(classes, dtype=np.int64),
        names=names,
        image_wh=size,
        file=str(source),
        image=str(path),
        refs=refs,
    )
    if detections is None:
        return box_problems[0]
    lineage = {
        "source_file": str(source),
        "source_image": str(path),
        "image_reference": reference,
        "labelstudio_task_id": task_id,
        "labelstudio_annotation_id": annotation.get("id"),
    }
    inspection_id = data.get("inspection_id") or (task.get("meta") or {}).get("inspection_id")
    if inspection_id is not None:
        lineage["inspection_id"] = inspection_id
    # The task's golden part, for reference recipes: task.data "reference", resolved as the image is.
    golden = data.get(REFERENCE_KEY)
    golden_path = resolve_image(golden, images_root=images_root) if isinstance(golden, str) and golden else None
    if golden and golden_path is None:
        return problem("missing_image", f"reference {golden} not found under {images_root}; pass the folder "
                       "holding Label Studio's media or local files (--images)", image=reference)
    return LabelledImage(
        path=path, detections=detections, lineage=lineage, problems=(*problems, *box_problems),
        reference=golden_path,
    )


def _box_in_pixels(
    value: Mapping[str, Any], *, kind: str | None, size: tuple[int, int]
) -> tuple[list[float], bool]:
    width, height = size
    if "points" in value:
        points = np.array(value["points"], dtype=np.float64).reshape(-1, 2) / 100 * [width, height]
        return [*points.min(axis=0), *points.max(axis=0)], False
    x = float(value["x"]) / 100 * width
    y = float(value["y"]) / 100 * height
    w = float(value["width"]) / 100 * width
    h = float(value["height"]) / 100 * height
    rotation = float(value.get("rotation") or 0.0)
    if abs(rotation) < 1e-9:
        return [x, y, x + w, y + h], False
    # Label Studio turns the rectangle clockwise about its top-left corner (x, y). Turn it in
    # pixels: in percent the two axes have different scales on a non-square image.
    angle = math.radians(rotation)
    along = np.array([math.cos(angle), math.sin(angle)])
    down = np.array([-math.sin(angle), math.cos(angle)])
    corner = np.array([x, y])
    corners = np.array(
        [corner, corner + w * along, corner + w * along + h * down, corner + h * down]
    )
    return [*corners.min(axis=0), *corners.max(axis=0)], True


def resolve_image(reference: str, *, images_root: Path) -> Path | None:
    """The local file a task's image reference points to, or None; never uses the network."""
    parts = urlsplit(reference)
    path_part = unquote(parts.path)
    candidates: list[Path] = []
    if path_part.startswith("/data/local-files"):
        document = parse_qs(parts.query).get("d", [""])[0]
        candidates += [images_root / document, Path("/") / document]
    elif path_part.startswith("/data/"):
        rest = path_part[len("/data/") :]
        candidates += [images_root / rest, images_root / "media" / rest]
        if rest.startswith("upload/"):
            candidates.append(images_root / rest[len("upload/") :])
    elif parts.scheme in ("", "file") and path_part:
        plain = Path(path_part)
        candidates.append(plain if plain.is_absolute() else images_root / plain)
    else:
        candidates += [
            images_root / parts.netloc / path_part.lstrip("/"),
            images_root / path_part.lstrip("/"),
        ]
    name = Path(path_part).name
    if name:
        candidates.append(images_root / name)
    return next((path for path in candidates if path.is_file()), None)


def write(
    images: Iterable[LabelledImage],
    out: str | Path,
    *,
    names: Mapping[int, str],
    url_prefix: str = LOCAL_FILES_PREFIX,
    as_predictions: bool = False,
    from_name: str = "label",
    to_name: str = "image",
) -> Path:
    """Write tasks.json and copies of the images (images/) into the new or empty folder `out`.

    Images are referenced as `url_prefix + "images/<name>"`: with the default, serve `out` as
    Label Studio's local-files document root. `as_predictions` writes the boxes as predictions
    (pre-annotations to correct) instead of annotations. `from_name` and `to_name` must match
    the project's labelling config (`<RectangleLabels name="label" toName="image">`).
    Returns the path of tasks.json.
    """
    out = empty_output_dir(Path(out))
    images = list(images)
    tasks: list[dict[str, Any]] = []
    for image, file_name in zip(images, unique_file_names(im.path for im in images), strict=True):
        copy_image(image.path, out / "images" / file_name)
        width, height = image.image_wh
        results = []
        for n, (class_id, box) in enumerate(zip(image.detections.class_id, image.detections.xyxy, strict=True)):
            x1, y1, x2, y2 = (float(v) for v in box)
            results.append(
                {
                    "id": f"r{n + 1}",
                    "type": "rectanglelabels",
                    "from_name": from_name,
                    "to_name": to_name,
                    "original_width": width,
                    "original_height": height,
                    "image_rotation": 0,
                    "value": {
                        "x": x1 / width * 100,
                        "y": y1 / height * 100,
                        "width": (x2 - x1) / width * 100,
                        "height": (y2 - y1) / height * 100,
                        "rotation": 0,
                        "rectanglelabels": [str(names[int(class_id)])],
                    },
                }
            )
        data: dict[str, Any] = {"image": f"{url_prefix}images/{file_name}"}
        if image.lineage.get("inspection_id") is not None:
            data["inspection_id"] = image.lineage["inspection_id"]
        key = "predictions" if as_predictions else "annotations"
        # Label Studio numbers tasks itself on import; the id makes the file readable as an
        # export too (by `read`, and by the SDK's converter, which requires it).
        task_id = image.lineage.get("labelstudio_task_id") or len(tasks) + 1
        tasks.append({"id": task_id, "data": data, key: [{"result": results}]})
    target = out / "tasks.json"
    target.write_text(json.dumps(tasks, indent=1), encoding="utf-8")
    return target


def _load_tasks(source: Path) -> list[Mapping[str, Any]]:
    try:
        data = json.loads(source.read_text(encoding="utf-8"))
    except (OSError, ValueError) as error:
        raise DatasetError(
            f"{source}: cannot read it as JSON ({error}); export the project again as JSON"
        ) from error
    if isinstance(data, dict):
        data = [data]
    if not isinstance(data, list) or not all(isinstance(task, dict) for task in data):
        raise DatasetError(f"{source}: expected Label Studio's JSON export, a list of tasks")
    return data


def _chosen_annotation(task: Mapping[str, Any]) -> Mapping[str, Any] | None:
    submitted = [
        a
        for a in task.get("annotations") or task.get("completions") or []
        if isinstance(a, dict) and not a.get("was_cancelled") and not a.get("skipped")
    ]
    if not submitted:
        return None
    return max(
        submitted, key=lambda a: (str(a.get("updated_at") or a.get("created_at") or ""), _id(a))
    )


def _id(annotation: Mapping[str, Any]) -> int:
    value = annotation.get("id")
    return value if isinstance(value, int) else 0


def _labels_of(result: Mapping[str, Any]) -> list[str]:
    value = result.get("value") or {}
    for key in _BOX_TYPES:
        if key in value:
            return [str(label) for label in value[key] or []]
    return []


REFERENCE_KEY = "reference"


def _image_reference(data: Mapping[str, Any], image_key: str | None) -> str | None:
    keys = [image_key] if image_key else list(_IMAGE_KEYS)
    for key in keys:
        value = data.get(key)
        if isinstance(value, str) and value:
            return value
    return None
