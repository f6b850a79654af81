"""The stations' reference images, decoded once and kept for the frames that need them.

Example::

    references = ReferenceImages(StationReferences(db), images)
    golden = references.pixels("line1-cam2", 3, frame_hw=(512, 612))   # grey, at the frame's size

A reference is read from the image store, decoded and made grey on the first frame that needs
it (in the frame's decode thread), then kept, with its copy at the size the station's frames
decode to (a 2448x2048 JPEG decoded at 1/4 needs the reference at 1/4 on every frame: made
once, not per frame). Its version never changes, so the cache needs no invalidation, only a
bound. A new version is a new key.
"""

from __future__ import annotations

import threading
from collections import OrderedDict

import numpy as np

from inspection.detect.reference import fit_reference
from inspection.store.images import ImageStorage
from inspection.store.references import StationReferences

# Each entry is one golden part in grey (5 MB for 5 megapixels), as stored or at a frame size:
# enough for every station of a line, a few versions each.
MAX_CACHED = 32


class ReferenceImages:
    def __init__(self, references: StationReferences, images: ImageStorage, *, max_cached: int = MAX_CACHED) -> None:
        self.references, self.images, self.max_cached = references, images, max_cached
        self._cache: OrderedDict[tuple[str, int, tuple[int, int] | None], np.ndarray] = OrderedDict()
        self._lock = threading.Lock()

    def pixels(self, station_id: str, version: int, *, frame_hw: tuple[int, int] | None = None) -> np.ndarray:
        """The reference in grey, at `frame_hw` (height, width) when given, else as stored."""
        key = (station_id, version, frame_hw)
        with self._lock:
            if key in self._cache:
                self._cache.move_to_end(key)
                return self._cache[key]
        if frame_hw is None:
            image = self.references.grey_image(station_id, version, self.images)
        else:
            image = fit_reference(self.pixels(station_id, version), frame_hw)
        with self._lock:
            self._cache[key] = image
            while len(self._cache) > self.max_cached:
                self._cache.popitem(last=False)
        return image
