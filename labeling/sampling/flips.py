"""How far the production detector disagrees with itself on a frame and its mirror image (after
CALD, Yu et al. 2022: consistency-based active learning for object detection).

Example::

    from labeling.sampling.flips import FlipConsistency

    flips = FlipConsistency("models/default/v3/model.onnx", images)   # images: an image store
    flips.scores(records)     # {inspection id: (0.62, {"class": "short", "confidence": 0.7, "iou": 0.31, ...})}

A detector that has learnt a defect finds it in the mirrored frame too, at the mirrored place
and with about the same confidence; where it has not, its boxes move, change class, or appear
on one side only. The `flip_disagreement` strategy (strategies.py) sends the frames where the
two disagree most. DeepPCB's defects and most line defects have no handedness, and the
product's recipes train with left-right flips (recipes/), so the mirror image is a frame the
model should judge alike.

Per frame, two forward passes with ONNX Runtime on the CPU: the frame and its left-right
mirror (for a reference model, the mirror of the frame against the mirror of its golden part).
The mirror's boxes are mapped back into the frame, and each box of one pass is matched to the
box of the other pass of the same class with the highest IoU (greedy, highest first). A pair
disagrees by max(confidences) x (1 - IoU x (1 - |confidence difference|)); a box without a
twin by its own confidence. Weighting by confidence keeps the faint boxes the service asks for
(down to 0.01, every review threshold) from outweighing a real one. The frame's score is its
largest disagreement, in [0, 1]; a frame where neither pass finds a box scores 0.

Not in the shipped policy: bench/loop has not measured it against random picks (issue 22).
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from inspection.detect.detector import Detector
from inspection.detect.goodonly import is_goodonly_file
from inspection.detections import Detections
from inspection.errors import ModelError, NotFound
from inspection.evaluate.metrics import box_iou
from inspection.store.records import InspectionRecord
from inspection.store.references import StationReferences
from labeling.sampling.frames import StoredFrames

# The boxes the service asks the detector for (serving/model_manager.py): those the rules saw.
CONF = 0.01


class FlipConsistency:
    """Each stored frame's disagreement with its mirror image (`Flips` of sampler.py)."""

    def __init__(self, model_path: str | Path, images: Any, *, references: StationReferences | None = None,
                 conf: float = CONF, threads: int = 1) -> None:
        self.path = Path(model_path)
        if is_goodonly_file(self.path):
            raise ModelError(f"{self.path} is a good-only model: it draws one `anomaly` box wherever a frame is "
                             "unlike the good parts, so its mirror says nothing; flip_disagreement picks nothing "
                             "until a supervised model is in production")
        self.detector = Detector(self.path, providers=["cpu"], threads=threads, conf=conf, warmup=False)
        self.frames = StoredFrames(self.detector, images, references=references)
        self._cache: dict[str, tuple[float, dict[str, Any]]] = {}

    def score(self, image: np.ndarray, size: tuple[int, int], golden: np.ndarray | None = None
              ) -> tuple[float, dict[str, Any]]:
        """The disagreement of one decoded frame of original (width, height) `size` with its
        mirror (`golden`: the grey golden part fitted to it, for a reference model)."""
        references = None if golden is None else [golden, cv2.flip(golden, 1)]
        found, mirrored = self.detector.predict([image, cv2.flip(image, 1)], original_sizes=[size, size],
                                                references=references)
        return disagreement(found, unmirror(mirrored))

    def scores(self, records: Sequence[InspectionRecord]) -> dict[str, tuple[float, dict[str, Any]]]:
        """One (score, figures) per inspection id; a frame whose image cannot be read (or, for a
        reference model, that was judged without a golden part) is left out."""
        found = {}
        for record in records:
            key = self.frames.key(record)
            if key is None:
                continue
            if key not in self._cache:
                try:
                    self._cache[key] = self.score(*self.frames.load(record))
                except (NotFound, OSError, ValueError):
                    continue
            found[record.id] = self._cache[key]
        return found


def unmirror(detections: Detections) -> Detections:
    """Boxes found in a left-right mirrored image, in the unmirrored image's pixels."""
    width = detections.image_wh[0]
    xyxy = detections.xyxy.copy()
    xyxy[:, 0], xyxy[:, 2] = width - detections.xyxy[:, 2], width - detections.xyxy[:, 0]
    return Detections(xyxy, detections.confidence, detections.class_id, detections.names, detections.image_wh)


def disagreement(found: Detections, twin: Detections) -> tuple[float, dict[str, Any]]:
    """How far two passes over the same frame disagree (the module docstring says how), with the
    figures of the box that disagrees most: its class, its confidence, its twin's IoU and
    confidence (None without a twin), and how many boxes each pass found."""
    iou = box_iou(found.xyxy, twin.xyxy) if len(found) and len(twin) else np.zeros((len(found), len(twin)))
    same_class = found.class_id[:, None] == twin.class_id[None, :]
    iou = np.where(same_class, iou, 0.0)
    pairs: list[tuple[int, int]] = []
    used_found: set[int] = set()
    used_twin: set[int] = set()
    for flat in np.argsort(-iou, axis=None, kind="stable"):  # greedy: the best overlaps first
        i, j = divmod(int(flat), iou.shape[1])
        if iou[i, j] <= 0:
            break
        if i not in used_found and j not in used_twin:
            pairs.append((i, j))
            used_found.add(i)
            used_twin.add(j)
    names = {**twin.names, **found.names}
    worst: tuple[float, dict[str, Any]] = (0.0, {})
    for i, j in pairs:
        a, b = float(found.confidence[i]), float(twin.confidence[j])
        score = max(a, b) * (1.0 - float(iou[i, j]) * (1.0 - abs(a - b)))
        if score > worst[0]:
            worst = (score, {"class": names.get(int(found.class_id[i]), str(found.class_id[i])),
                             "confidence": round(a, 4), "twin_confidence": round(b, 4),
                             "iou": round(float(iou[i, j]), 4)})
    for side, detections, used in (("frame", found, used_found), ("mirror", twin, used_twin)):
        for i in range(len(detections)):
            score = float(detections.confidence[i])
            if i not in used and score > worst[0]:
                worst = (score, {"class": names.get(int(detections.class_id[i]), str(detections.class_id[i])),
                                 "confidence": round(score, 4), "twin_confidence": None, "iou": None,
                                 "only_in": side})
    return worst[0], {**worst[1], "boxes": len(found), "mirror_boxes": len(twin)}
