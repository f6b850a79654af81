"""`Detections`: the one value every part of qc passes around.

The detector makes it once per image; station rules filter it, the record store saves it, the
review page draws it, and training reads corrected ones back as labels.

Example::

    >>> import numpy as np
    >>> from inspection.detections import Detections
    >>> d = Detections(
    ...     xyxy=np.array([[10, 10, 50, 30]], dtype=np.float32),
    ...     confidence=np.array([0.9], dtype=np.float32),
    ...     class_id=np.array([1]),
    ...     names={0: "scratch", 1: "dent"},
    ...     image_wh=(640, 480),
    ... )
    >>> d.to_records()[0]["class"], float(d.area[0])
    ('dent', 800.0)
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np


@dataclass(frozen=True, eq=False)
class Detections:
    """Boxes found in one image, in that image's pixels.

    Attributes:
        xyxy: (N, 4) float32 corners x1, y1, x2, y2 in the original image's pixels.
        confidence: (N,) float32 scores in [0, 1].
        class_id: (N,) int64 indexes into `names`.
        names: class id to class name, as carried in the model's metadata.
        image_wh: (width, height) of the original image.
    """

    xyxy: np.ndarray
    confidence: np.ndarray
    class_id: np.ndarray
    names: Mapping[int, str] = field(default_factory=dict)
    image_wh: tuple[int, int] = (0, 0)

    def __post_init__(self) -> None:
        xyxy = np.asarray(self.xyxy, dtype=np.float32).reshape(-1, 4)
        confidence = np.asarray(self.confidence, dtype=np.float32).reshape(-1)
        class_id = np.asarray(self.class_id, dtype=np.int64).reshape(-1)
        if not (len(xyxy) == len(confidence) == len(class_id)):
            raise ValueError(
                f"Detections need as many boxes as scores and classes, got {len(xyxy)} boxes, "
                f"{len(confidence)} scores, {len(class_id)} classes"
            )
        object.__setattr__(self, "xyxy", xyxy)
        object.__setattr__(self, "confidence", confidence)
        object.__setattr__(self, "class_id", class_id)
        object.__setattr__(self, "names", dict(self.names))
        object.__setattr__(self, "image_wh", (int(self.image_wh[0]), int(self.image_wh[1])))

    @classmethod
    def empty(cls, names: Mapping[int, str] | None = None, image_wh: tuple[int, int] = (0, 0)) -> Detections:
        return cls(
            xyxy=np.zeros((0, 4), np.float32),
            confidence=np.zeros(0, np.float32),
            class_id=np.zeros(0, np.int64),
            names=names or {},
            image_wh=image_wh,
        )

    def __len__(self) -> int:
        return len(self.confidence)

    def __getitem__(self, index: Any) -> Detections:
        """Select boxes by boolean mask, index array or slice; keeps names and image size."""
        if isinstance(index, (int, np.integer)):
            index = [int(index)]
        return Detections(
            xyxy=self.xyxy[index],
            confidence=self.confidence[index],
            class_id=self.class_id[index],
            names=self.names,
            image_wh=self.image_wh,
        )

    @property
    def class_names(self) -> list[str]:
        return [self.names.get(int(i), str(int(i))) for i in self.class_id]

    @property
    def area(self) -> np.ndarray:
        """Box areas in square pixels."""
        wh = np.clip(self.xyxy[:, 2:] - self.xyxy[:, :2], 0, None)
        return wh[:, 0] * wh[:, 1]

    @property
    def centers(self) -> np.ndarray:
        return (self.xyxy[:, :2] + self.xyxy[:, 2:]) / 2

    def to_records(self, *, decimals: int = 2) -> list[dict[str, Any]]:
        """One JSON-ready dict per box: class, class_id, confidence, box [x1, y1, x2, y2]."""
        return [
            {
                "class": name,
                "class_id": int(cid),
                "confidence": round(float(score), 5),
                "box": [round(float(v), decimals) for v in box],
            }
            for name, cid, score, box in zip(
                self.class_names, self.class_id, self.confidence, self.xyxy, strict=False
            )
        ]

    @classmethod
    def from_records(
        cls,
        records: Sequence[Mapping[str, Any]],
        *,
        names: Mapping[int, str],
        image_wh: tuple[int, int],
    ) -> Detections:
        """Inverse of `to_records` (used by the store and by review corrections)."""
        if not records:
            return cls.empty(names=names, image_wh=image_wh)
        return cls(
            xyxy=np.array([r["box"] for r in records], dtype=np.float32),
            confidence=np.array([r.get("confidence", 1.0) for r in records], dtype=np.float32),
            class_id=np.array([r["class_id"] for r in records], dtype=np.int64),
            names=names,
            image_wh=image_wh,
        )
