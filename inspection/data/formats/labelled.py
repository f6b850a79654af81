"""`LabelledImage` and `Problem`: what every format reader yields and every writer takes.

Example::

    >>> from inspection.detections import Detections
    >>> from inspection.data.formats.labelled import LabelledImage, Problem
    >>> image = LabelledImage(
    ...     path="frames/0001.png",
    ...     detections=Detections.empty(names={0: "scratch"}, image_wh=(640, 480)),
    ...     lineage={"source_file": "labels/0001.txt"},
    ... )
    >>> image.names, len(image.detections)
    ({0: 'scratch'}, 0)
    >>> str(Problem(file="labels/0002.txt", kind="unknown_class", message="class 7 ..."))
    'labels/0002.txt: class 7 ...'

A reader yields `LabelledImage | Problem`: a `Problem` for a file it could not import (the
other images still import), and `LabelledImage.problems` for what it fixed on the way in
(a zero-area box dropped, a box clipped to the image), so every oddity is reported once and
names the file to fix.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from inspection.detections import Detections

SPLITS = ("train", "val", "test")


@dataclass(frozen=True)
class Problem:
    """Something wrong with one file of a dataset, and how to fix it.

    Attributes:
        file: the file to fix: a label file, an annotation JSON or XML, or an image.
        kind: a short code: missing_label, missing_image, unreadable_image, size_mismatch,
            bad_label, unknown_class, out_of_bounds, zero_area, duplicate, not_annotated,
            unsupported_region, rotated_box, crowd_box, orphan_label.
        message: what is wrong and what to do, in one sentence or two.
        skipped: True when the image was left out; False when it was imported after the
            fix the message describes.
        image: the image concerned, when it is not `file` itself.
    """

    file: str
    kind: str
    message: str
    skipped: bool = True
    image: str | None = None

    def __str__(self) -> str:
        return f"{self.file}: {self.message}"

    def to_dict(self) -> dict[str, Any]:
        record: dict[str, Any] = {
            "file": self.file,
            "kind": self.kind,
            "message": self.message,
            "skipped": self.skipped,
        }
        if self.image is not None:
            record["image"] = self.image
        return record

    @classmethod
    def from_dict(cls, record: Mapping[str, Any]) -> Problem:
        return cls(
            file=record["file"],
            kind=record["kind"],
            message=record["message"],
            skipped=bool(record.get("skipped", True)),
            image=record.get("image"),
        )


@dataclass(frozen=True)
class LabelledImage:
    """One image file and its ground-truth boxes.

    Attributes:
        path: the image file.
        detections: boxes in the image's pixels (xyxy), confidence 1.0, with the dataset's
            class names and the image's (width, height).
        lineage: where the labels came from: source_file, source_image, inspection_id,
            labelstudio_task_id, labelstudio_annotation_id, coco_image_id, source_split,
            whichever are known.
        split: train, val or test when known (a version's split, or the split folder a
            source was read from), else None.
        problems: what the reader fixed on the way in; the image itself was imported.
        reference: the image's reference (its defect-free golden part), for reference
            recipes; None when the dataset has none.
    """

    path: Path
    detections: Detections
    lineage: Mapping[str, Any] = field(default_factory=dict)
    split: str | None = None
    problems: tuple[Problem, ...] = ()
    reference: Path | None = None  # the golden part this image is judged against, if any

    def __post_init__(self) -> None:
        object.__setattr__(self, "path", Path(self.path))
        if self.reference is not None:
            object.__setattr__(self, "reference", Path(self.reference))
        object.__setattr__(self, "lineage", dict(self.lineage))
        object.__setattr__(self, "problems", tuple(self.problems))

    @property
    def names(self) -> dict[int, str]:
        return dict(self.detections.names)

    @property
    def image_wh(self) -> tuple[int, int]:
        return self.detections.image_wh
