"""Class-aware non-maximum suppression in NumPy, matching `torchvision.ops.nms` as Ultralytics
calls it (boxes offset by class id x 7680, so boxes of different classes never suppress each
other; a box is dropped when its IoU with a kept, higher-scoring box is strictly above the
threshold).

Example::

    >>> import numpy as np
    >>> boxes = np.array([[0, 0, 10, 10], [1, 1, 10, 10], [0, 0, 10, 10]], np.float32)
    >>> scores = np.array([0.9, 0.8, 0.7], np.float32)
    >>> nms(boxes, scores, np.array([0, 0, 1]), iou_threshold=0.5).tolist()
    [0, 2]
"""

from __future__ import annotations

import numpy as np

# Ultralytics' class offset (ultralytics.utils.nms.non_max_suppression, max_wh).
CLASS_OFFSET = 7680.0


def nms(
    boxes: np.ndarray,
    scores: np.ndarray,
    class_id: np.ndarray | None,
    *,
    iou_threshold: float,
    max_det: int = 300,
) -> np.ndarray:
    """Indexes of the boxes to keep, highest score first, at most `max_det`.

    `class_id=None` makes it class-agnostic.
    """
    if len(boxes) == 0:
        return np.zeros(0, np.int64)
    boxes = boxes.astype(np.float32, copy=False)
    if class_id is not None:
        boxes = boxes + (class_id.astype(np.float32) * CLASS_OFFSET)[:, None]
    order = np.argsort(-scores, kind="stable")
    x1, y1, x2, y2 = (boxes[:, k] for k in range(4))
    areas = (x2 - x1) * (y2 - y1)
    keep: list[int] = []
    while order.size and len(keep) < max_det:
        best = order[0]
        keep.append(int(best))
        rest = order[1:]
        if not rest.size:
            break
        # Overlap of the best box with every remaining one, vectorised.
        w = np.minimum(x2[best], x2[rest]) - np.maximum(x1[best], x1[rest])
        h = np.minimum(y2[best], y2[rest]) - np.maximum(y1[best], y1[rest])
        inter = np.clip(w, 0, None) * np.clip(h, 0, None)
        with np.errstate(divide="ignore", invalid="ignore"):  # degenerate boxes: NaN, kept
            iou = inter / (areas[best] + areas[rest] - inter)
        order = rest[~(iou > iou_threshold)]
    return np.asarray(keep, dtype=np.int64)
