"""A process-wide bound on decoded pixels: what every decode reserves before it allocates.

Why: the per-image limit (QC_MAX_PIXELS) stops one bomb, not eight. A 1,080-byte RLE8 BMP
that claims 10000 x 10000 is under the 100 MP limit and costs ~443 MB of RSS to decode; eight
at once cost 3.75 GB, and one 8.8 KB /v2 request can carry eight (issue 9). So each request
reserves what decoding its frames allocates, in 3-byte pixels (a baseline JPEG decoded at 1/4
reserves 1/16 of its pixels; a PNG or BMP twice its pixels, since OpenCV holds two copies; a
progressive JPEG its coefficient buffers too: `ImageHeader.decode_cost`) before anything is
decoded, on every route that decodes (inspect, /v2 infer, the reference upload, drawn
images), and holds them until its answer is written, since the decoded pixels wait in the
batcher's queue until then. Decoding therefore never holds more than QC_MAX_PIXELS_IN_FLIGHT
x 3 bytes at once (600 MB by default; docs/serving.md). A request whose frames could never fit (over
QC_MAX_REQUEST_PIXELS) is refused with 413; one that does not fit *now*, because others hold
the budget (QC_MAX_PIXELS_IN_FLIGHT), with 503 and Retry-After, like a full queue.

Thread-safe (a plain lock): the async routes and the threadpool route that draws stored
images share one budget.

Example::

    budget = DecodeBudget(in_flight=200_000_000, per_request=100_000_000)
    with budget.reserve(header.decode_cost(reduce)):
        pixels = imaging.decode(data, reduce=reduce)
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

from fastapi import HTTPException

from inspection.errors import ImageTooLarge


class DecodeBudget:
    def __init__(self, *, in_flight: int, per_request: int) -> None:
        self.in_flight, self.per_request = in_flight, per_request
        self._used = 0
        self._lock = threading.Lock()

    @property
    def used(self) -> int:
        return self._used

    @contextlib.contextmanager
    def reserve(self, pixels: int) -> Iterator[None]:
        """Hold `pixels` of the budget for the block; 413 if a request this size can never
        fit, 503 with Retry-After if it does not fit now."""
        limit = min(self.per_request, self.in_flight)
        if pixels > limit:
            setting = "QC_MAX_REQUEST_PIXELS" if self.per_request <= self.in_flight else "QC_MAX_PIXELS_IN_FLIGHT"
            raise ImageTooLarge(
                f"the request's images decode to {pixels:,} pixels, above the limit of {limit:,} "
                f"per request ({setting}); send fewer or smaller images")
        with self._lock:
            if self._used + pixels > self.in_flight:
                raise HTTPException(
                    503, f"busy: images being decoded hold {self._used:,} of {self.in_flight:,} "
                         "pixels (QC_MAX_PIXELS_IN_FLIGHT); retry with the same Idempotency-Key",
                    headers={"Retry-After": "1"})
            self._used += pixels
        try:
            yield
        finally:
            with self._lock:
                self._used -= pixels
