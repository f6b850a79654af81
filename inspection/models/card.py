"""A registry version's model card, made from what its ONNX file (or good-only `.qcgood`)
says about itself.

Example::

    card = model_card(Path("runs/pcb/export/model.onnx"))                      # qc models add, qc export
    card = model_card(path, source="qc loop job 01j...", loop_job="01j...",     # a loop turn's candidate
                      fine_tuned_from="pcb@v3", recipe={...})
    registry.add("pcb", path, card=card)

The one builder of a card: `qc models add`, `qc export --register` and a `qc loop` turn all
make theirs here, so every card has the same keys (a caller adds its own, never fewer). The
file is loaded and warmed up once, so a file that is not a working detection model is refused
before anything is registered.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from inspection.detect.detector import Detector


def model_card(model: Path, *, source: str | None = None, **more: Any) -> dict[str, Any]:
    """The card of the ONNX file `model`: classes, input size and layout, precision, the
    lineage qc export stamped in its metadata (data and recipe hashes, dataset version, training
    metrics, export check, serving choice, input contract); `source` says where it came from
    (default: qc export, or the file's path for a model trained elsewhere); `more` adds keys."""
    detector = Detector(model, providers=["cpu"])
    qc_meta = detector.info.qc
    card: dict[str, Any] = {
        "source": source or ("qc export" if qc_meta.get("data_hash")
                             else f"registered from elsewhere: {Path(model).resolve()}"),
        "names": {str(k): v for k, v in detector.names.items()},
        "imgsz": list(detector.input_hw),
        "layout": detector.layout.value,
        "precision": qc_meta.get("precision", "fp32"),
        "data_hash": qc_meta.get("data_hash"),
        "dataset_version": qc_meta.get("dataset_version"),
        "recipe_hash": qc_meta.get("recipe_hash"),
        "train_metrics": qc_meta.get("train_metrics"),
        "export_check": qc_meta.get("export_check"),
        "serving_choice": qc_meta.get("serving_choice"),
        "input": qc_meta.get("input") or {"reference": False},
        "metadata": qc_meta,
    }
    goodonly = getattr(detector.backend, "model", None)  # a .qcgood file (GoodOnlyBackend)
    if goodonly is not None:
        card["source"] = source or f"qc goodonly build: {Path(model).resolve()}"
        card["goodonly"] = {"threshold": goodonly.threshold, **goodonly.header()["params"],
                            **{k: v for k, v in goodonly.info.items() if k != "left_out"}}
    return {**card, **more}
