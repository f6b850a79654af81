"""Boxes drawn on images for people: `qc predict --save`, the review page, eval galleries.

Uses OpenCV's built-in Hershey font, so nothing is downloaded and no font file ships.

Example::

    annotated = draw(image, detections)
    cv2.imwrite("annotated.jpg", annotated)
"""

from __future__ import annotations

import cv2
import numpy as np

from inspection.detections import Detections

# Distinct, colour-blind-friendly colours (Okabe-Ito), BGR.
PALETTE = [(0, 159, 230), (233, 180, 86), (115, 158, 0), (66, 228, 240), (178, 114, 0),
           (0, 94, 213), (167, 121, 204), (0, 0, 0)]


def color_for(class_id: int) -> tuple[int, int, int]:
    return PALETTE[int(class_id) % len(PALETTE)]


def draw(
    image: np.ndarray,
    detections: Detections,
    *,
    color: tuple[int, int, int] | None = None,
    labels: bool = True,
) -> np.ndarray:
    """A copy of `image` with each box and its class and score drawn on it."""
    out = image.copy()
    scale = max(out.shape[:2]) / 1000
    thickness = max(1, round(2 * scale))
    font_scale = max(0.4, 0.6 * scale)
    for box, score, cid, name in zip(
        detections.xyxy, detections.confidence, detections.class_id, detections.class_names, strict=False
    ):
        x1, y1, x2, y2 = (int(round(v)) for v in box)
        c = color or color_for(cid)
        cv2.rectangle(out, (x1, y1), (x2, y2), c, thickness, lineType=cv2.LINE_AA)
        if not labels:
            continue
        text = f"{name} {score:.2f}"
        (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, font_scale, thickness)
        top = max(y1 - th - base - 2, 0)
        cv2.rectangle(out, (x1, top), (x1 + tw + 2, top + th + base + 2), c, -1)
        cv2.putText(out, text, (x1 + 1, top + th + 1), cv2.FONT_HERSHEY_SIMPLEX, font_scale,
                    (255, 255, 255), thickness, lineType=cv2.LINE_AA)
    return out
