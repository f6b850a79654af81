"""Stored frames as the production detector sees them: decoded, and paired with the golden part
each one was judged against.

Example::

    from labeling.sampling.frames import StoredFrames

    frames = StoredFrames(detector, images, references=StationReferences(db))   # detector: a Detector
    key = frames.key(record)                 # None: no image, or judged without its golden part
    image, size, golden = frames.load(record)  # golden: fitted to the decoded image, or None

The sampler's second passes over stored frames (embeddings.py, flips.py) read frames through
this one class, so both see a frame exactly as the service judged it: decoded by the
detector's own `load_bytes`, and, for a reference model (the product's recipe for DeepPCB),
with the golden part of the record's `reference_version`, read once per golden part.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from inspection.detect.detector import Detector
from inspection.detect.reference import fit_reference
from inspection.errors import ModelError
from inspection.store.records import InspectionRecord
from inspection.store.references import StationReferences


class StoredFrames:
    """Reads stored frames for one detector (`images`: an image store, read(sha, format) -> bytes)."""

    def __init__(self, detector: Detector, images: Any, *, references: StationReferences | None = None) -> None:
        if detector.needs_reference and references is None:
            raise ModelError(f"{detector.path} is a reference model (it judges each frame against a golden part): "
                             "give the stations' references (StationReferences) to read its frames")
        self.detector, self.images, self.references = detector, images, references
        self._golden: dict[tuple[str, int], np.ndarray] = {}

    def key(self, record: InspectionRecord) -> str | None:
        """What the detector's input for `record` depends on: the image, and for a reference model
        its golden part too. None when there is no input to make (no stored image, or a reference
        model's frame judged without a golden part)."""
        if record.image_sha256 is None:
            return None
        if not self.detector.needs_reference:
            return record.image_sha256
        if record.reference_version is None:
            return None
        return f"{record.image_sha256}:{record.station_id}:{record.reference_version}"

    def load(self, record: InspectionRecord) -> tuple[np.ndarray, tuple[int, int], np.ndarray | None]:
        """The decoded frame, its original (width, height), and the grey golden part fitted to
        the decoded size (None for a plain model). Call only when `key(record)` is not None;
        NotFound, OSError or ValueError when the image is gone or unreadable."""
        assert record.image_sha256 is not None  # key() said so
        image, size = self.detector.load_bytes(self.images.read(record.image_sha256, record.image_format))
        if not self.detector.needs_reference:
            return image, size, None
        return image, size, fit_reference(self._golden_of(record), image.shape[:2])

    def _golden_of(self, record: InspectionRecord) -> np.ndarray:
        """The grey golden part `record` was judged against (read once per golden part)."""
        assert record.reference_version is not None and self.references is not None  # key() said so
        key = (record.station_id, record.reference_version)
        if key not in self._golden:
            self._golden[key] = self.references.grey_image(*key, self.images)
        return self._golden[key]
