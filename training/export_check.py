"""Checking exported ONNX models against the torch model they came from, on validation images.

Every variant (fp32, fp16, int8) is scored with the same code on the same images as the torch
weights (Ultralytics predict at conf 0.001, IoU 0.7, as the production detector runs), and the
difference is what the variant costs in accuracy. The result goes into each ONNX file's
metadata (`qc_export_check`), so the registry card of a model carries it wherever it goes.

Example::

    report = check_exports(run.best_weights, {"fp32": fp32_path, "int8": int8_path},
                           data=run.data["yaml"], imgsz=640)
    report["int8"]["delta_map50_95"]
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from inspection.detections import Detections
from inspection.evaluate.scoring import (
    MAX_DET,
    NMS_IOU,
    RANKING_CONF,
    Predictor,
    load_split,
    onnx_predictor,
    score_many,
)
from training.ultralytics_env import load_ultralytics


def _summary(evaluation) -> dict[str, float]:
    return {"map50": round(evaluation.map50, 5), "map50_95": round(evaluation.map50_95, 5)}


def check_exports(
    weights: Path, variants: dict[str, Path], *, data: str, imgsz: int | tuple[int, int], split: str = "val",
    progress: bool = True,
) -> dict[str, Any]:
    names, samples = load_split(str(data), split=split)
    yolo = load_ultralytics().YOLO(str(weights))

    def torch_predict(pixels) -> Detections:
        size = list(imgsz) if isinstance(imgsz, tuple) else imgsz
        result = yolo.predict(pixels, conf=RANKING_CONF, iou=NMS_IOU, imgsz=size, max_det=MAX_DET,
                              verbose=False, device="cpu")[0]
        boxes = result.boxes
        return Detections(xyxy=boxes.xyxy.numpy(), confidence=boxes.conf.numpy(),
                          class_id=boxes.cls.numpy().astype(int), names=names,
                          image_wh=(pixels.shape[1], pixels.shape[0]))

    # One pass over the split: each image is read once and given to torch and every variant.
    predictors: dict[str, Predictor] = {"torch": torch_predict}
    for precision, path in variants.items():
        predictors[f"onnx {precision}"] = onnx_predictor(path, names=names, data=str(data))
    scored = score_many(predictors, names=names, samples=samples, progress=progress,
                        label="check exports", source=f"{data} ({split})")
    reference = _summary(scored["torch"].evaluation)
    report: dict[str, Any] = {"data": str(data), "split": split, "images": len(samples), "torch": reference}
    for precision in variants:
        got = _summary(scored[f"onnx {precision}"].evaluation)
        report[precision] = {
            **got,
            "delta_map50": round(got["map50"] - reference["map50"], 5),
            "delta_map50_95": round(got["map50_95"] - reference["map50_95"], 5),
        }
    return report
