"""Turn raw model outputs into `Detections`, for the two layouts Ultralytics exports.

- raw head, `[B, 4 + nc, N]`: centre-x, centre-y, width, height, then one score per class, for
  N anchor points; needs confidence filtering and NMS (`export(nms=None)`, the default).
- end-to-end, `[B, K, 6]`: x1, y1, x2, y2, score, class, already suppressed in the graph
  (`export(nms=False)` on an NMS-free head such as YOLO26's, or `nms=True`).

Both follow `ultralytics.utils.nms.non_max_suppression`, so scores and boxes equal
Ultralytics' own predictions (tests/test_parity.py).
"""

from __future__ import annotations

from collections.abc import Mapping
from enum import StrEnum

import numpy as np

from inspection.detect.nms import nms
from inspection.detect.preprocess import LetterboxInfo, scale_boxes
from inspection.detections import Detections

# Ultralytics' cap on boxes entering NMS (max_nms), kept for parity at very low thresholds.
MAX_NMS = 30000


class Layout(StrEnum):
    RAW = "raw"  # [B, 4 + nc, N]
    END2END = "end2end"  # [B, K, 6]


def decode(
    output: np.ndarray,
    info: LetterboxInfo,
    *,
    layout: Layout,
    names: Mapping[int, str],
    conf: float,
    iou: float,
    max_det: int = 300,
) -> Detections:
    """Detections for one image from its slice of the output (batch dimension removed)."""
    output = output.astype(np.float32, copy=False)
    if layout is Layout.END2END:
        boxes, scores, classes = _end2end(output, conf=conf, max_det=max_det)
    else:
        boxes, scores, classes = _raw(output, conf=conf, iou=iou, max_det=max_det)
    return Detections(
        xyxy=scale_boxes(boxes, info) if len(boxes) else boxes,
        confidence=scores,
        class_id=classes,
        names=names,
        image_wh=info.original,
    )


def _end2end(output: np.ndarray, *, conf: float, max_det: int) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    rows = output[output[:, 4] > conf][:max_det]
    return rows[:, :4], rows[:, 4], rows[:, 5].astype(np.int64)


def _raw(
    output: np.ndarray, *, conf: float, iou: float, max_det: int
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    class_scores = output[4:]
    best = class_scores.max(axis=0)
    candidates = np.flatnonzero(best > conf)
    if not candidates.size:
        empty = np.zeros((0, 4), np.float32)
        return empty, np.zeros(0, np.float32), np.zeros(0, np.int64)
    scores = best[candidates]
    classes = class_scores[:, candidates].argmax(axis=0)
    if candidates.size > MAX_NMS:
        top = np.argsort(-scores, kind="stable")[:MAX_NMS]
        candidates, scores, classes = candidates[top], scores[top], classes[top]
    cx, cy, w, h = output[:4, candidates]
    boxes = np.stack([cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2], axis=1)
    keep = nms(boxes, scores, classes, iou_threshold=iou, max_det=max_det)
    return boxes[keep], scores[keep], classes[keep].astype(np.int64)
