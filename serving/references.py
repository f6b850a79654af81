"""The stations' reference images, decoded once and kept for the frames that need them.

Example::

    references = ReferenceImages(StationReferences(db), images)
    golden = references.pixels("line1-cam2", version=3)   # BGR, full size, cached

A reference is read from the image store and decoded on the first frame that needs it (in the
frame's decode thread), then kept: its version never changes, so the cache needs no
invalidation, only a bound. A new version is a new key.
"""

from __future__ import annotations

import threading
from collections import OrderedDict

import numpy as np

from inspection.detect.imaging import decode
from inspection.store.images import ImageStorage
from inspection.store.references import StationReferences

# Each entry is one decoded golden part (a 5-megapixel BGR frame is 15 MB): enough for every
# station of a line, a few versions each.
MAX_CACHED = 32


class ReferenceImages:
    def __init__(self, references: StationReferences, images: ImageStorage, *, max_cached: int = MAX_CACHED) -> None:
        self.references, self.images, self.max_cached = references, images, max_cached
        self._cache: OrderedDict[tuple[str, int], np.ndarray] = OrderedDict()
        self._lock = threading.Lock()

    def pixels(self, station_id: str, version: int) -> np.ndarray:
        key = (station_id, version)
        with self._lock:
            if key in self._cache:
                self._cache.move_to_end(key)
                return self._cache[key]
        reference = self.references.get(station_id, version)
        image = decode(self.images.read(reference.image_sha256, reference.image_format))
        with self._lock:
            self._cache[key] = image
            while len(self._cache) > self.max_cached:
                self._cache.popitem(last=False)
        return image
