"""Pascal VOC: one XML per image, `<object><name>` and `<bndbox>` with xmin, ymin, xmax, ymax
in pixels.

Example::

    from inspection.data.formats import Problem, voc

    for item in voc.read("data/VOCdevkit/VOC2012", one_based=True):
        if not isinstance(item, Problem):
            print(item.path, item.detections.class_names)
    voc.write(images, "export/bottles-voc", names={0: "scratch", 1: "dent"})

Layouts read: the devkit's `Annotations/` + `JPEGImages/` (+ `ImageSets/Main/{train,val,test}.txt`
for splits), or XML files beside their images. `images` points elsewhere for the images. An
XML finds its image by `<filename>`, else by its own file stem.

Coordinates: by default they are read as written, as pixel corners, which is what LabelImg,
CVAT and Label Studio's converter write. The original devkit counts pixels from 1 and makes
xmax inclusive; `one_based=True` reads and writes that convention (subtract 1 from xmin and
ymin), as supervision and Ultralytics' VOC script do. Written coordinates are whole pixels,
which most VOC readers expect: a box moves by up to half a pixel (inherent to the format).

Class ids: VOC names classes, it does not number them. Ids follow `names` when given (the
dataset's earlier versions, so ids stay stable), then new names in sorted order.

Why not supervision's `DetectionDataset.from_pascal_voc` / `as_pascal_voc`: it decodes every
image only to learn its size (and ignores `<size>`), raises on the first bad XML so one file
fails the whole import, orders classes by first appearance, and only knows the one-based
convention. XML is parsed here with the standard library (expat 2.4.1+ refuses entity-
expansion bombs) under the rules in `_boxes`.
"""

from __future__ import annotations

import xml.etree.ElementTree as ET
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np

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
from inspection.errors import DatasetError, ImageError


@dataclass(frozen=True)
class _Annotation:
    file: Path
    filename: str | None
    size: tuple[int, int] | None
    objects: list[tuple[str, list[float]]]


def read(
    source: str | Path,
    *,
    images: str | Path | None = None,
    names: Sequence[str] | None = None,
    one_based: bool = False,
    allow_missing_labels: bool = False,
) -> Iterator[LabelledImage | Problem]:
    """Labelled images of a VOC folder, one per XML (and per image without one: a
    `missing_label` problem, or an image without defects if `allow_missing_labels`)."""
    source = Path(source)
    if not source.is_dir():
        raise DatasetError(f"{source} is not a folder; give the folder of the VOC XML files")
    devkit = (source / "Annotations").is_dir()
    xml_dir = source / "Annotations" if devkit else source
    if images is not None:
        image_dir = Path(images)
    elif devkit and (source / "JPEGImages").is_dir():
        image_dir = source / "JPEGImages"
    else:
        image_dir = source
    splits = _split_lists(source) if devkit else {}

    annotations: list[_Annotation] = []
    for xml_file in sorted(xml_dir.rglob("*.xml")):
        parsed = _parse(xml_file)
        if isinstance(parsed, Problem):
            yield parsed
        else:
            annotations.append(parsed)
    class_names = list(names or [])
    class_names += sorted({name for a in annotations for name, _ in a.objects} - set(class_names))
    index_of = {name: i for i, name in enumerate(class_names)}
    names_map = dict(enumerate(class_names))

    by_stem: dict[str, list[Path]] = {}
    all_images = find_images(image_dir)
    for image in all_images:
        by_stem.setdefault(image.stem, []).append(image)
    used: set[Path] = set()
    for annotation in annotations:
        path = _image_for(annotation, image_dir=image_dir, by_stem=by_stem)
        if path is None:
            yield Problem(
                file=str(annotation.file),
                kind="missing_image",
                message=f"image {annotation.filename or annotation.file.stem} not found in "
                f"{image_dir}; add it or pass the image folder (--images)",
            )
            continue
        if path in used:
            yield Problem(
                file=str(annotation.file),
                kind="duplicate",
                message=f"{path.name} already has another XML; the first one was kept",
                image=str(path),
            )
            continue
        used.add(path)
        yield _labelled(
            annotation,
            path,
            names=names_map,
            index_of=index_of,
            one_based=one_based,
            split=splits.get(path.stem),
        )
    for path in all_images:
        if path in used:
            continue
        if not allow_missing_labels:
            yield Problem(
                file=str(xml_dir / f"{path.stem}.xml"),
                kind="missing_label",
                message=f"no XML for {path.name}; write one, without objects if the image "
                "shows no defect",
                image=str(path),
            )
            continue
        empty = _Annotation(file=path, filename=path.name, size=None, objects=[])
        yield _labelled(
            empty,
            path,
            names=names_map,
            index_of=index_of,
            one_based=one_based,
            split=splits.get(path.stem),
        )


def _labelled(
    annotation: _Annotation,
    path: Path,
    *,
    names: dict[int, str],
    index_of: dict[str, int],
    one_based: bool,
    split: str | None,
) -> LabelledImage | Problem:
    try:
        size = image_wh(path)
    except ImageError as error:
        return Problem(
            file=str(path), kind="unreadable_image", message=f"{error}; fix or delete it"
        )
    if annotation.size is not None and annotation.size != size:
        return Problem(
            file=str(annotation.file),
            kind="size_mismatch",
            message=f"{path.name} is {size[0]}x{size[1]} but <size> says "
            f"{annotation.size[0]}x{annotation.size[1]}; its boxes would be misplaced: fix "
            "<size> or the image",
            image=str(path),
        )
    offset = np.array([1, 1, 0, 0]) if one_based else np.zeros(4)
    xyxy = np.array([box for _, box in annotation.objects], dtype=np.float64).reshape(-1, 4)
    detections, problems = checked_detections(
        xyxy=xyxy - offset,
        class_id=np.array([index_of[name] for name, _ in annotation.objects], dtype=np.int64),
        names=names,
        image_wh=size,
        file=str(annotation.file),
        image=str(path),
        refs=[f"object {i + 1} ({name})" for i, (name, _) in enumerate(annotation.objects)],
    )
    if detections is None:
        return problems[0]
    lineage = {"source_file": str(annotation.file), "source_image": str(path)}
    if split:
        lineage["source_split"] = split
    return LabelledImage(
        path=path, detections=detections, lineage=lineage, split=split, problems=tuple(problems)
    )


def _parse(file: Path) -> _Annotation | Problem:
    def bad(message: str) -> Problem:
        return Problem(file=str(file), kind="bad_label", message=message)

    try:
        root = ET.parse(file).getroot()
    except (ET.ParseError, OSError) as error:
        return bad(f"not readable XML ({error}); fix or re-export it")
    objects = []
    for number, element in enumerate(root.findall("object"), start=1):
        name = (element.findtext("name") or "").strip()
        box = element.find("bndbox")
        texts = [None if box is None else box.findtext(tag) for tag in ("xmin", "ymin", "xmax", "ymax")]
        try:
            values = [float(text) for text in texts if text is not None]
        except ValueError:
            values = []
        if len(values) != len(texts):
            return bad(f"object {number}: needs <bndbox> with numeric xmin, ymin, xmax, ymax")
        if not name:
            return bad(f"object {number}: has no <name>; add the class name")
        objects.append((name, values))
    size = None
    try:
        width, height = int(root.findtext("size/width", "")), int(root.findtext("size/height", ""))
        if width > 0 and height > 0:
            size = (width, height)
    except ValueError:
        pass  # <size> is optional; the decoded image has the truth
    filename = (root.findtext("filename") or "").strip() or None
    return _Annotation(file=file, filename=filename, size=size, objects=objects)


def _image_for(
    annotation: _Annotation, *, image_dir: Path, by_stem: dict[str, list[Path]]
) -> Path | None:
    if annotation.filename:
        for folder in (image_dir, annotation.file.parent):
            candidate = folder / annotation.filename
            if candidate.is_file() and is_image(candidate):
                return candidate
    stem = Path(annotation.filename).stem if annotation.filename else annotation.file.stem
    for candidate_stem in (stem, annotation.file.stem):
        if candidate_stem in by_stem:
            return by_stem[candidate_stem][0]
    return None


def _split_lists(source: Path) -> dict[str, str]:
    split_of: dict[str, str] = {}
    for split in ("train", "val", "test"):
        listing = source / "ImageSets" / "Main" / f"{split}.txt"
        if listing.is_file():
            for line in listing.read_text(encoding="utf-8").split():
                split_of[line] = split
    return split_of


def write(
    images: Iterable[LabelledImage],
    out: str | Path,
    *,
    names: Mapping[int, str],
    one_based: bool = False,
) -> Path:
    """Write the devkit layout (Annotations/, JPEGImages/, ImageSets/Main/<split>.txt) into
    the new or empty folder `out`; coordinates are rounded to whole pixels. Returns `out`."""
    out = empty_output_dir(Path(out))
    images = list(images)
    split_lists: dict[str, list[str]] = {}
    for image, file_name in zip(images, unique_file_names(im.path for im in images), strict=True):
        copy_image(image.path, out / "JPEGImages" / file_name)
        xml = _xml(image, file_name=file_name, names=names, one_based=one_based)
        target = out / "Annotations" / f"{Path(file_name).stem}.xml"
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_bytes(xml)
        if image.split:
            split_lists.setdefault(image.split, []).append(Path(file_name).stem)
    for split, stems in split_lists.items():
        listing = out / "ImageSets" / "Main" / f"{split}.txt"
        listing.parent.mkdir(parents=True, exist_ok=True)
        listing.write_text("".join(f"{stem}\n" for stem in stems), encoding="utf-8")
    return out


def _xml(
    image: LabelledImage, *, file_name: str, names: Mapping[int, str], one_based: bool
) -> bytes:
    width, height = image.image_wh
    root = ET.Element("annotation")
    ET.SubElement(root, "folder").text = "JPEGImages"
    ET.SubElement(root, "filename").text = file_name
    size = ET.SubElement(root, "size")
    for tag, value in (("width", width), ("height", height), ("depth", 3)):
        ET.SubElement(size, tag).text = str(value)
    for class_id, box in zip(image.detections.class_id, image.detections.xyxy, strict=True):
        x1, y1, x2, y2 = (round(float(v)) for v in box)
        # Rounding must not erase a thin box: keep at least one pixel.
        x2, y2 = max(x2, x1 + 1), max(y2, y1 + 1)
        if one_based:
            x1, y1 = x1 + 1, y1 + 1
        element = ET.SubElement(root, "object")
        ET.SubElement(element, "name").text = str(names[int(class_id)])
        ET.SubElement(element, "difficult").text = "0"
        bndbox = ET.SubElement(element, "bndbox")
        for tag, value in (("xmin", x1), ("ymin", y1), ("xmax", x2), ("ymax", y2)):
            ET.SubElement(bndbox, tag).text = str(value)
    ET.indent(root)
    return ET.tostring(root, encoding="utf-8", xml_declaration=True)
