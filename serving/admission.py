"""Fair admission: one flooding station cannot take the queue from the others.

Why: the micro-batcher's queue (QC_QUEUE_SIZE) is first come, first served. While station s1
flooded it from 200 connections, station s2 got 1 answer in 13: its frames found the queue
full of s1's and were refused with 503 (issue 9). Here every request names who sends it (the
station for /v1 frames, the key for /v2 inference). While the service is congested (at
least `capacity` requests in flight: QC_FAIR_CAPACITY, by default two full batches per
inference worker) and more than one sender is active, each sender may hold at most its share,
`capacity // active senders`, requests in flight. A request over its share is refused at once
with 429 and Retry-After, before its body is read; a sender under its share is admitted even
when the service is congested, so the others keep getting through. Uncongested, everyone is
admitted; a sender that is alone is never refused here (the batcher's own backpressure, 503,
applies to it as before), so one busy line loses none of its throughput.

Why the capacity is two batches and not the queue: the batcher is FIFO, so a quiet station's
frame waits behind every frame the flooder holds; a share of two batches keeps that wait to
about one batch time per active sender (BENCHMARKS.md, "fairness"), where a share of the
64-frame queue let it reach seconds.

"Active" means a request in flight now or answered within the last `QC_FAIR_WINDOW_S`
seconds: a quiet station that posts a frame every second stays active between its frames,
so a flooder cannot take everything back the moment the quiet station's frame leaves.

Example::

    admission = FairAdmission(capacity=16, window_s=5.0)
    with admission.admit("station:line1"):   # 429 (HTTPException) when over its share
        ...                                   # read, decode, infer, record
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable, Iterator

from fastapi import HTTPException


class FairAdmission:
    def __init__(self, *, capacity: int, window_s: float,
                 on_refused: Callable[[str], object] = lambda who: None) -> None:
        self.capacity, self.window_s = capacity, window_s
        self.on_refused = on_refused
        self._in_flight: dict[str, int] = {}
        self._total = 0
        self._last_seen: dict[str, float] = {}
        self._lock = threading.Lock()

    def _active(self, now: float) -> int:
        horizon = now - self.window_s
        for who in [w for w, t in self._last_seen.items() if t < horizon and not self._in_flight.get(w)]:
            del self._last_seen[who]  # forget the long quiet, so the table stays small
        return len(self._last_seen)

    def share(self, active: int) -> int:
        return max(1, self.capacity // max(1, active))

    @contextlib.contextmanager
    def admit(self, who: str) -> Iterator[None]:
        now = time.monotonic()
        with self._lock:
            self._last_seen[who] = now
            active = self._active(now)
            held = self._in_flight.get(who, 0)
            share = self.share(active)
            if active > 1 and self._total >= self.capacity and held >= share:
                refused = True
            else:
                refused = False
                self._in_flight[who] = held + 1
                self._total += 1
        if refused:
            self.on_refused(who)
            raise HTTPException(
                429, f"{who.split(':', 1)[-1]} has {held} requests in flight, its fair share of "
                     f"the queue ({share} of {self.capacity}) while {active} senders are active; "
                     "retry after Retry-After seconds with the same Idempotency-Key",
                headers={"Retry-After": "1"})
        try:
            yield
        finally:
            with self._lock:
                self._total -= 1
                left = self._in_flight.get(who, 1) - 1
                if left:
                    self._in_flight[who] = left
                else:
                    self._in_flight.pop(who, None)
                self._last_seen[who] = time.monotonic()
