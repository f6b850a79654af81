"""Class-aware non-maximum suppression through OpenCV (`cv2.dnn.NMSBoxesBatched`), keeping
the boxes `torchvision.ops.nms` keeps as Ultralytics calls it (boxes of different classes
never suppress each other; a box is dropped when its IoU with a kept, higher-scoring box is
strictly above the threshold).

Example::

    >>> import numpy as np
    >>> boxes = np.array([[0, 0, 10, 10], [1, 1, 10, 10], [0, 0, 10, 10]], np.float32)
    >>> scores = np.array([0.9, 0.8, 0.7], np.float32)
    >>> nms(boxes, scores, np.array([0, 0, 1]), iou_threshold=0.5).tolist()
    [0, 2]

Why OpenCV: faster than the vectorised NumPy loop it replaced, with the same kept boxes
(tests/test_detector.py keeps that NumPy version as the reference and compares them exactly).
Measured here (2 cores, 6 classes, IoU 0.7, max_det 300): 300 boxes 5.1 -> 0.3 ms; 3000 spread
boxes 11.6 -> 2.3 ms; 30000 -> 97 -> 14 ms; 3000 crowded boxes 9.1 -> 4.9 ms.

OpenCV's `top_k` cuts the candidates *before* suppression, so it cannot stand in for
`max_det`, and suppressing every candidate (top_k=0) then slicing costs O(candidates x kept):
200 ms -> 16.6 s for 30000 spread boxes. But greedy NMS decides each box from higher-scoring
ones only, so the boxes kept among the top k candidates are exactly the first ones of the full
answer. `nms` therefore gives OpenCV twice `max_det` candidates and widens the window only
while fewer than `max_det` survive: the result equals a full run sliced to `max_det`.
"""

from __future__ import annotations

import cv2
import numpy as np

# Ultralytics' class offset (ultralytics.utils.nms.non_max_suppression, max_wh). OpenCV offsets
# classes by its own amount; kept as the reference tests' offset and for callers.
CLASS_OFFSET = 7680.0

# Candidates first given to OpenCV, in multiples of max_det, and the factor the window grows by
# while fewer than max_det boxes survive (crowded boxes suppress each other).
_FIRST_WINDOW = 2
_GROWTH = 4


def nms(
    boxes: np.ndarray,
    scores: np.ndarray,
    class_id: np.ndarray | None,
    *,
    iou_threshold: float,
    max_det: int = 300,
) -> np.ndarray:
    """Indexes of the boxes (x1, y1, x2, y2) to keep, highest score first, at most `max_det`.

    `class_id=None` makes it class-agnostic. Scores must be positive (OpenCV keeps only
    scores above its threshold, which may not be negative); the detector's confidence
    threshold sees to that.
    """
    if len(boxes) == 0 or max_det <= 0:
        return np.zeros(0, np.int64)
    xywh = boxes.astype(np.float64)  # a copy: OpenCV's Rect2d is (x, y, width, height)
    xywh[:, 2:] -= xywh[:, :2]
    # OpenCV separates classes by (largest coordinate + 1) x class id: with a negative
    # coordinate (a box past the left or top edge) two classes could touch. IoU does not
    # change under translation, so move every box into the positive quadrant.
    xywh[:, :2] -= xywh[:, :2].min(axis=0)
    # A box with no width or height overlaps nothing: torchvision's 0/0 IoU keeps it, where
    # OpenCV would count two of them as identical. Such boxes are kept here, outside OpenCV.
    solid = (xywh[:, 2] > 0) & (xywh[:, 3] > 0)
    if solid.all():
        return _suppress(xywh, scores, class_id, iou_threshold=iou_threshold, max_det=max_det)
    index = np.flatnonzero(solid)
    kept = index[_suppress(xywh[index], scores[index], None if class_id is None else class_id[index],
                           iou_threshold=iou_threshold, max_det=max_det)]
    kept = np.concatenate([kept, np.flatnonzero(~solid)])
    order = np.lexsort((kept, -scores[kept].astype(np.float64)))  # by score, then by index
    return kept[order][:max_det].astype(np.int64)


def _suppress(
    xywh: np.ndarray, scores: np.ndarray, class_id: np.ndarray | None, *, iou_threshold: float, max_det: int
) -> np.ndarray:
    n = len(xywh)
    scores = scores.astype(np.float32, copy=False)
    ids = None if class_id is None else class_id.astype(np.int32, copy=False)
    window = min(n, _FIRST_WINDOW * max_det)
    while True:
        top_k = 0 if window >= n else window  # 0: every candidate
        # OpenCV's stubs ask for sequences; its bindings take these arrays without a copy.
        if ids is None:
            keep = cv2.dnn.NMSBoxes(xywh, scores, 0.0, iou_threshold, top_k=top_k)  # type: ignore[arg-type]
        else:
            keep = cv2.dnn.NMSBoxesBatched(xywh, scores, ids, 0.0, iou_threshold, top_k=top_k)  # type: ignore[arg-type]
        kept = np.asarray(keep, np.int64).reshape(-1)
        if len(kept) >= max_det or window >= n:
            return kept[:max_det]
        window = min(n, window * _GROWTH)
