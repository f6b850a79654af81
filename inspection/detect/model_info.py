"""What a detection ONNX file says about itself: class names, input size, layout, lineage.

Ultralytics writes its metadata as Python literals (`names` = "{0: 'open', ...}"); qc's
exporter adds JSON values under `qc_*` keys (dataset version and hash, recipe hash, metrics).
Metadata travels inside the model file, so a model copied to a line PC still says what it is.

Example::

    >>> parse_metadata({"names": "{0: 'open', 1: 'short'}", "imgsz": "[640, 640]", "stride": "32"})
    ... # doctest: +ELLIPSIS
    ModelInfo(names={0: 'open', 1: 'short'}, input_hw=(640, 640), stride=32, ...)
"""

from __future__ import annotations

import ast
import json
from dataclasses import dataclass, field
from typing import Any

from inspection.errors import ModelError

QC_PREFIX = "qc_"


@dataclass(frozen=True)
class ModelInfo:
    names: dict[int, str]
    input_hw: tuple[int, int] | None  # (height, width) as exported (metadata key "imgsz")
    stride: int = 32
    task: str = "detect"
    end2end: bool | None = None
    qc: dict[str, Any] = field(default_factory=dict)  # qc_* keys, JSON-decoded


def _literal(value: str | None) -> Any:
    if value is None:
        return None
    try:
        return ast.literal_eval(value)
    except (ValueError, SyntaxError):
        return value


_FIX = "export the model again with qc export or Ultralytics"


def _bad(key: str, value: str, expected: str) -> ModelError:
    return ModelError(f"metadata {key}={value!r} is not {expected}; {_FIX}")


def _names(value: str | None) -> dict[int, str]:
    names = _literal(value)
    if names is None or names == "":
        return {}
    if isinstance(names, (list, tuple)):
        names = dict(enumerate(names))
    expected = "a class list such as {0: 'scratch', 1: 'dent'}"
    if not isinstance(names, dict):
        raise _bad("names", str(value), expected)
    try:
        parsed = {int(k): str(v) for k, v in names.items()}
    except (TypeError, ValueError):
        raise _bad("names", str(value), expected) from None
    if any(isinstance(k, (bool, float)) for k in names) or any(k < 0 for k in parsed):
        raise _bad("names", str(value), expected)
    return parsed


def _imgsz(value: str | None) -> tuple[int, int] | None:
    imgsz = _literal(value)
    if imgsz is None or imgsz == "":
        return None
    if isinstance(imgsz, (list, tuple)) and len(imgsz) == 1:
        imgsz = imgsz[0]  # [640]: square, as Ultralytics reads it
    if _positive_int(imgsz):
        return (imgsz, imgsz)
    if isinstance(imgsz, (list, tuple)) and len(imgsz) == 2 and all(map(_positive_int, imgsz)):
        return (imgsz[0], imgsz[1])
    raise _bad("imgsz", str(value), "an input size such as [640, 640] (height, width)")


def _stride(value: str | None) -> int:
    stride = _literal(value)
    if stride is None or stride == "":
        return 32
    if isinstance(stride, float) and stride.is_integer():
        stride = int(stride)
    if not _positive_int(stride):
        raise _bad("stride", str(value), "a positive whole number such as 32")
    return stride


def _positive_int(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool) and value > 0


def parse_metadata(meta: dict[str, str]) -> ModelInfo:
    """The model's description from its ONNX metadata; a malformed `names`, `imgsz` or `stride`
    is a ModelError naming the key and the value (the caller adds the file)."""
    end2end = _literal(meta.get("end2end"))
    qc = {}
    for key, value in meta.items():
        if key.startswith(QC_PREFIX):
            try:
                qc[key[len(QC_PREFIX) :]] = json.loads(value)
            except json.JSONDecodeError:
                qc[key[len(QC_PREFIX) :]] = value
    return ModelInfo(
        names=_names(meta.get("names")),
        input_hw=_imgsz(meta.get("imgsz")),
        stride=_stride(meta.get("stride")),
        task=str(meta.get("task", "detect")),
        end2end=bool(end2end) if isinstance(end2end, bool) else None,
        qc=qc,
    )


def qc_metadata(values: dict[str, Any]) -> dict[str, str]:
    """Encode qc's own metadata for writing into an ONNX file (see training/export.py)."""
    return {QC_PREFIX + key: json.dumps(value, sort_keys=True) for key, value in values.items()}
