"""A good-only model (`.qcgood`) behind the detector's engine seam, so the service, `qc eval`,
the promotion gate and the labeling bridge run it wherever they run an ONNX model.

Example::

    from inspection.detect.detector import Detector

    detector = Detector("part.qcgood")          # picks GoodOnlyBackend by the suffix
    detector.names                              # {0: 'anomaly'}
    detector.predict([frame])[0]                # the model's boxes, in frame pixels

The backend looks like an end-to-end detection head (`[B, K, 6]`: x1, y1, x2, y2, confidence,
class) whose input is the golden part's size, so the detector letterboxes a station's frame
(the golden's size: scale 1, no padding) and decodes the boxes as it does any model's. Each
image of a batch is turned back into 8-bit pixels and judged by `GoodOnlyModel.predict`; a
frame letterboxed from another size is judged with its grey padding, which the band of good
never expects, so such a frame is the wrong camera view and the boxes say so.

The anomaly map is not a network output: the review page asks for it by inspection
(`GET /v1/inspections/{id}/anomaly.png`), and it is computed again from the stored frame then.
"""

from __future__ import annotations

from pathlib import Path

import cv2
import numpy as np

from inspection.detect.backend import TensorSpec
from inspection.detect.goodonly import NAMES, GoodOnlyModel

# Boxes per image the head reports at most (Detector's max_det default).
MAX_BOXES = 300
# What `providers` says runs it: no execution provider, NumPy and OpenCV in this process.
PROVIDER = "GoodOnly (NumPy/OpenCV, CPU)"


class GoodOnlyBackend:
    """`InferenceBackend` for a `GoodOnlyModel`: thread-safe (predict reads the model only)."""

    def __init__(self, model: GoodOnlyModel, path: Path) -> None:
        self.model, self.path = model, path
        height, width = model.golden.shape
        self.input = TensorSpec("images", "float", (None, 3, height, width))
        self.output = TensorSpec("output0", "float", (None, MAX_BOXES, 6))
        self.metadata: dict[str, str] = {
            "names": repr(NAMES), "imgsz": repr([height, width]), "stride": "1", "task": "detect",
            "end2end": "True", "description": f"good-only model (threshold {model.threshold:g})",
        }
        self.missing_providers: list[str] = []

    @classmethod
    def open(cls, path: str | Path) -> GoodOnlyBackend:
        """`ModelError` naming the file and the fix when it is not a readable good-only model."""
        return cls(GoodOnlyModel.load(path), Path(path))

    @property
    def providers(self) -> list[str]:
        return [PROVIDER]

    def run(self, batch: np.ndarray) -> np.ndarray:
        """(B, MAX_BOXES, 6) float32 for an NCHW batch (RGB, 0..1): each image's boxes, the
        rows past its last box zero (confidence 0: below any threshold)."""
        out = np.zeros((len(batch), MAX_BOXES, 6), np.float32)
        for i, image in enumerate(batch):
            rgb = np.clip(np.rint(np.asarray(image, np.float32).transpose(1, 2, 0) * 255), 0, 255).astype(np.uint8)
            found = self.model.predict(cv2.cvtColor(rgb, cv2.COLOR_RGB2BGR)).detections
            count = min(len(found), MAX_BOXES)
            if count:
                order = np.argsort(-found.confidence)[:count]
                out[i, :count, :4] = found.xyxy[order]
                out[i, :count, 4] = found.confidence[order]
                out[i, :count, 5] = found.class_id[order]
        return out
