"""Tiled inference: a frame much larger than the network, judged tile by tile at its native
pixel scale, the boxes merged back into frame pixels.

Example::

    from inspection.detect.tiling import Tiling, cut, merge

    tiling = Tiling(size=640, overlap=96)
    tiles = cut(frame, tiling)                              # [(x, y, crop), ...]
    found = detector.predict_inputs([crop for _, _, crop in tiles])
    detections = merge(found, [(x, y) for x, y, _ in tiles], image_wh=(frame.shape[1], frame.shape[0]))
    detections = detector.predict_tiled(frame, tiling)      # the same, in one call

A 20-megapixel camera frame shrunk to a 640 input makes a 6-pixel pin-hole under one pixel;
cut into 640 tiles it stays 6 pixels, as in training on native-resolution tiles
(training/tiles.py, which shares `starts`). Tiles overlap by `overlap` pixels so that a defect
smaller than the overlap lies whole in at least one tile.

Merging: a defect on a tile edge is found twice, whole in one tile and cut in its neighbour.
Plain NMS keeps both (the cut box's IoU with the whole one is small); here a box is merged
into a higher-scoring one of its class when most of the smaller of the two lies inside the
other (intersection over the smaller area, `min_overlap`), and the kept box grows to cover
both, as SAHI's NMM does.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

from inspection.detections import Detections
from inspection.errors import ConfigError


@dataclass(frozen=True)
class Tiling:
    """Cut frames into `size`-pixel squares overlapping by `overlap` pixels."""

    size: int
    overlap: int = 64

    def count(self, image_hw: tuple[int, int]) -> int:
        """How many tiles an image of `image_hw` (height, width) is cut into."""
        height, width = image_hw
        return len(starts(height, self.size, self.overlap)) * len(starts(width, self.size, self.overlap))

    def __post_init__(self) -> None:
        if self.size < 32 or not 0 <= self.overlap < self.size:
            raise ConfigError(f"tiles of {self.size} px overlapping by {self.overlap}: the size must be at "
                              "least 32 and the overlap at least 0 and below the size")


def starts(length: int, size: int, overlap: int) -> list[int]:
    """Tile origins along one axis: every `size - overlap`, the last flush with the end."""
    if length <= size:
        return [0]
    step = size - overlap
    origins = list(range(0, length - size, step))
    return [*origins, length - size]


def cut(image: np.ndarray, tiling: Tiling) -> list[tuple[int, int, np.ndarray]]:
    """(x, y, crop) for every tile of `image`, row by row; crops are views, not copies."""
    height, width = image.shape[:2]
    return [(x, y, image[y:y + tiling.size, x:x + tiling.size])
            for y in starts(height, tiling.size, tiling.overlap)
            for x in starts(width, tiling.size, tiling.overlap)]


def merge(found: Sequence[Detections], origins: Sequence[tuple[int, int]], *,
          image_wh: tuple[int, int], min_overlap: float = 0.6, max_det: int = 300,
          scale: float = 1.0) -> Detections:
    """One frame's detections from its tiles' (boxes in tile pixels, offset by the tile's
    origin, times `scale` when the tiles were cut from a reduced decode)."""
    names = found[0].names if found else {}
    if not any(len(d) for d in found):
        return Detections.empty(names=names, image_wh=image_wh)
    boxes = np.concatenate([d.xyxy + np.array([x, y, x, y], np.float32)
                            for d, (x, y) in zip(found, origins, strict=True)]) * scale
    scores = np.concatenate([d.confidence for d in found])
    classes = np.concatenate([d.class_id for d in found])
    boxes, scores, classes = _merge(boxes, scores, classes, min_overlap=min_overlap)
    order = np.argsort(-scores, kind="stable")[:max_det]
    width, height = image_wh
    boxes = boxes[order]
    boxes[:, [0, 2]] = boxes[:, [0, 2]].clip(0, width)
    boxes[:, [1, 3]] = boxes[:, [1, 3]].clip(0, height)
    return Detections(xyxy=boxes.astype(np.float32), confidence=scores[order].astype(np.float32),
                      class_id=classes[order], names=names, image_wh=image_wh)


def _merge(boxes: np.ndarray, scores: np.ndarray, classes: np.ndarray, *, min_overlap: float
           ) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """Greedy by score: each box either joins a kept box of its class that covers most of the
    smaller of the two (the kept box grows to their union) or is kept itself."""
    order = np.argsort(-scores, kind="stable")
    kept = np.zeros((len(boxes), 4), np.float32)
    kept_scores = np.zeros(len(boxes), np.float32)
    kept_classes = np.zeros(len(boxes), np.int64)
    n = 0
    for i in order:
        box = boxes[i]
        if n:
            same = kept_classes[:n] == classes[i]
            iw = np.minimum(box[2], kept[:n, 2]) - np.maximum(box[0], kept[:n, 0])
            ih = np.minimum(box[3], kept[:n, 3]) - np.maximum(box[1], kept[:n, 1])
            inter = np.clip(iw, 0, None) * np.clip(ih, 0, None)
            area = max(float((box[2] - box[0]) * (box[3] - box[1])), 1e-6)
            areas = np.maximum((kept[:n, 2] - kept[:n, 0]) * (kept[:n, 3] - kept[:n, 1]), 1e-6)
            covered = same & (inter / np.minimum(area, areas) >= min_overlap)
            if covered.any():
                k = int(np.argmax(covered))  # the highest-scoring kept box it joins
                kept[k, :2] = np.minimum(kept[k, :2], box[:2])
                kept[k, 2:] = np.maximum(kept[k, 2:], box[2:])
                continue
        kept[n], kept_scores[n], kept_classes[n] = box, scores[i], classes[i]
        n += 1
    return kept[:n], kept_scores[:n], kept_classes[:n]
