"""Export trained weights to ONNX for the `inspection` detector, with lineage in the file.

Example::

    from training.export import export_onnx

    path = export_onnx(run.best_weights, out_dir=run.folder / "export", imgsz=640,
                       precision="int8", data_yaml=run.data["yaml"],
                       lineage={"data_hash": run.data["content_hash"], "recipe_hash": run.recipe.hash})

Ultralytics' exporter writes the graph, class names, imgsz and stride. fp16 converts on the
CPU with ONNX Runtime's float16 converter (inputs and outputs stay fp32); int8 is ONNX Runtime
static quantization (QDQ) calibrated on images of the data's val split, with the box-decoding
head left in float (Ultralytics' `onnx_int8_quantize`: one int8 scale over box pixels and
class scores would round every score to zero). qc then adds its own `qc_*` metadata: the
training data's content hash, dataset version, recipe hash, precision and metrics.
"""

from __future__ import annotations

import os
import shutil
import tempfile
from pathlib import Path
from typing import Any, Literal

from inspection.detect.model_info import qc_metadata
from inspection.errors import ConfigError, ModelError
from training.ultralytics_env import load_ultralytics

Precision = Literal["fp32", "fp16", "int8"]
_QUANTIZE = {"fp32": None, "fp16": 16, "int8": 8}


def export_onnx(
    weights: str | Path,
    *,
    out_dir: Path,
    imgsz: int | tuple[int, int] | None = None,
    precision: Precision = "fp32",
    end2end: bool = False,
    dynamic: bool = False,
    batch: int = 1,
    data_yaml: str | Path | None = None,
    lineage: dict[str, Any] | None = None,
) -> Path:
    """Write `out_dir/model[-fp16|-int8].onnx` and return its path.

    `end2end=True` exports the NMS-free head ([B, 300, 6]) of models that have one (YOLO26);
    the default exports the raw head and leaves NMS to the detector. `imgsz` may be
    (height, width): a 2448x2048 camera frame letterboxes to 640x535, so a 544x640 model does
    15% less work than a square one on every frame. Static shapes are the default: on CPU a
    static 640 model ran in 34 ms against 60 ms for a dynamic one (../shared/MEASURED.md);
    `dynamic=True` is for GPU micro-batching.
    """
    if precision not in _QUANTIZE:
        raise ConfigError(f"precision {precision!r}: use fp32, fp16 or int8")
    if precision == "int8" and not data_yaml:
        raise ConfigError("int8 export needs calibration images: pass the data.yaml (--data)")
    weights = Path(weights)
    if not weights.is_file():
        raise ModelError(f"{weights}: no such weights file; pass a run folder or a .pt file")
    ultralytics = load_ultralytics()
    out_dir.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=out_dir, prefix=".export-") as scratch:
        # The exporter writes beside the weights, so export a private copy.
        local = Path(scratch) / "model.pt"
        shutil.copy2(weights, local)
        model = ultralytics.YOLO(str(local))
        args: dict[str, Any] = {
            "format": "onnx",
            "imgsz": list(imgsz) if isinstance(imgsz, tuple) else imgsz or model.overrides.get("imgsz") or 640,
            "dynamic": dynamic,
            "batch": batch,
            "simplify": True,
            "nms": False if end2end else None,
            "device": "cpu",
            "verbose": False,
        }
        if _QUANTIZE[precision]:
            args["quantize"] = _QUANTIZE[precision]
        if precision == "int8":
            args["data"] = str(data_yaml)
            args["fraction"] = 1.0
        produced = Path(model.export(**args))
        suffix = "" if precision == "fp32" else f"-{precision}"
        target = out_dir / f"model{suffix}.onnx"
        stamp_metadata(produced, {"precision": precision, **(lineage or {})})
        os.replace(produced, target)
    return target


def stamp_metadata(path: Path, values: dict[str, Any]) -> None:
    """Add or replace `qc_*` metadata entries in an ONNX file, atomically."""
    import onnx

    model = onnx.load(str(path))
    entries = qc_metadata(values)
    kept = [p for p in model.metadata_props if p.key not in entries]
    del model.metadata_props[:]
    model.metadata_props.extend(kept)
    for key, value in entries.items():
        prop = model.metadata_props.add()
        prop.key, prop.value = key, value
    partial = path.with_name(path.name + ".partial")
    onnx.save(model, str(partial))
    os.replace(partial, path)
