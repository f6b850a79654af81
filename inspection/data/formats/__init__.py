"""Labelled images in and out of the annotation formats qc speaks, one module per format.

Example::

    from inspection.data.formats import LabelledImage, Problem, coco, yolo

    imported, problems = [], []
    for item in yolo.read("data/bottles"):
        (problems if isinstance(item, Problem) else imported).append(item)
    coco.write(imported, "export/bottles-coco", names=imported[0].names)

Every module has `read(source, ...)`, yielding a `LabelledImage` per image it could import
and a `Problem` per file it could not (bad input never stops the others), and
`write(images, out, *, names)`, which fills a new or empty folder. Boxes survive a round trip
to float32 precision, except VOC, which stores whole pixels.

Formats: `yolo` (folders), `coco` (JSON), `voc` (XML), `labelstudio` (JSON export). They use
numpy, OpenCV and PyYAML only, so a line PC can import and export data without the training
extras.
"""

from __future__ import annotations

from importlib import import_module
from types import ModuleType

from inspection.data.formats.labelled import SPLITS, LabelledImage, Problem
from inspection.errors import DatasetError

FORMATS = ("yolo", "coco", "voc", "labelstudio")

__all__ = ["FORMATS", "SPLITS", "LabelledImage", "Problem", "format_module"]


def format_module(name: str) -> ModuleType:
    """The module of format `name` (one of FORMATS)."""
    if name not in FORMATS:
        raise DatasetError(f"unknown format {name!r}; use one of {', '.join(FORMATS)}")
    return import_module(f"inspection.data.formats.{name}")
