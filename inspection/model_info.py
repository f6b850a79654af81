"""What a detection ONNX file says about itself: class names, input size, layout, lineage.

Ultralytics writes its metadata as Python literals (`names` = "{0: 'open', ...}"); qc's
exporter adds JSON values under `qc_*` keys (dataset version and hash, recipe hash, metrics).
Metadata travels inside the model file, so a model copied to a line PC still says what it is.

Example::

    >>> parse_metadata({"names": "{0: 'open', 1: 'short'}", "imgsz": "[640, 640]", "stride": "32"})
    ... # doctest: +ELLIPSIS
    ModelInfo(names={0: 'open', 1: 'short'}, imgsz=(640, 640), stride=32, ...)
"""

from __future__ import annotations

import ast
import json
from dataclasses import dataclass, field
from typing import Any

QC_PREFIX = "qc_"


@dataclass(frozen=True)
class ModelInfo:
    names: dict[int, str]
    imgsz: tuple[int, int] | None  # (height, width) as exported
    stride: int = 32
    task: str = "detect"
    end2end: bool | None = None
    qc: dict[str, Any] = field(default_factory=dict)  # qc_* keys, JSON-decoded
    raw: dict[str, str] = field(default_factory=dict)


def _literal(value: str | None) -> Any:
    if value is None:
        return None
    try:
        return ast.literal_eval(value)
    except (ValueError, SyntaxError):
        return value


def parse_metadata(meta: dict[str, str]) -> ModelInfo:
    names = _literal(meta.get("names")) or {}
    if isinstance(names, list):
        names = dict(enumerate(names))
    imgsz = _literal(meta.get("imgsz"))
    if isinstance(imgsz, int):
        imgsz = (imgsz, imgsz)
    end2end = _literal(meta.get("end2end"))
    qc = {}
    for key, value in meta.items():
        if key.startswith(QC_PREFIX):
            try:
                qc[key[len(QC_PREFIX) :]] = json.loads(value)
            except json.JSONDecodeError:
                qc[key[len(QC_PREFIX) :]] = value
    return ModelInfo(
        names={int(k): str(v) for k, v in dict(names).items()},
        imgsz=tuple(int(v) for v in imgsz) if imgsz else None,
        stride=int(_literal(meta.get("stride")) or 32),
        task=str(meta.get("task", "detect")),
        end2end=bool(end2end) if isinstance(end2end, bool) else None,
        qc=qc,
        raw=dict(meta),
    )


def qc_metadata(values: dict[str, Any]) -> dict[str, str]:
    """Encode qc's own metadata for writing into an ONNX file (see training/export.py)."""
    return {QC_PREFIX + key: json.dumps(value, sort_keys=True) for key, value in values.items()}
