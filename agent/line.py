"""The line's clock: each taken frame gets one answer, from the service or, when the service is
late, the station's safe default at the deadline.

Example::

    board = LineBoard(outputs, station="press-3", deadline_s=0.8, safe_default=LineAnswer.NG)
    board.expect(frame, captured_mono=time.monotonic())
    board.verdict(frame, body, http_ms=23.0)       # from the service: OK / NG / REVIEW
    # ... or nothing in time: the line hears NG at the deadline, and `misses` counts it

The frame stays in the spool either way and is recorded when the service answers; a verdict
that comes after the deadline is logged as late and not sent to the line (the part has moved
on). Signals go out from one thread of their own, so a slow webhook never delays the next
post or the next deadline.
"""

from __future__ import annotations

import heapq
import logging
import queue
import statistics
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass

from agent.config import LineAnswer
from agent.outputs import LineSignal, Outputs
from agent.spool import SpooledFrame

log = logging.getLogger("qc.agent.line")
ANSWERS = {"PASS": LineAnswer.OK, "FAIL": LineAnswer.NG}


@dataclass
class _Pending:
    frame_key: str
    part_id: str | None
    captured_mono: float
    deadline_mono: float


class LineBoard:
    def __init__(self, outputs: Outputs, *, station: str, deadline_s: float, safe_default: LineAnswer,
                 review_as: LineAnswer = LineAnswer.REVIEW, on_miss: Callable[[], object] | None = None,
                 samples: int = 10000) -> None:
        self.outputs, self.station = outputs, station
        self.deadline_s, self.safe_default, self.review_as = deadline_s, safe_default, review_as
        self.on_miss = on_miss
        self._pending: dict[str, _Pending] = {}
        self._heap: list[tuple[float, str]] = []
        self._lock = threading.Condition()
        self._signals: queue.Queue[LineSignal | None] = queue.Queue()
        self.misses = self.late = self.answered = 0
        # Agent's own share of each service answer: capture to signal, less the HTTP round trip.
        self.added_ms: deque[float] = deque(maxlen=samples)
        self.total_ms: deque[float] = deque(maxlen=samples)
        self._stop = False
        self._threads = [threading.Thread(target=self._deadlines, name="line-deadlines", daemon=True),
                         threading.Thread(target=self._dispatch, name="line-dispatch", daemon=True)]
        for thread in self._threads:
            thread.start()

    def expect(self, frame: SpooledFrame, *, captured_mono: float) -> None:
        with self._lock:
            entry = _Pending(frame.key, frame.part_id, captured_mono, captured_mono + self.deadline_s)
            self._pending[frame.key] = entry
            heapq.heappush(self._heap, (entry.deadline_mono, frame.key))
            self._lock.notify_all()

    def verdict(self, frame: SpooledFrame, body: dict, *, http_ms: float) -> bool:
        """The service's verdict for `frame`; False when it came too late for the line."""
        now = time.monotonic()
        with self._lock:
            entry = self._pending.pop(frame.key, None)
        if entry is None:
            self.late += 1
            log.info("verdict %s for %s came after the line's deadline (recorded, not sent to the line)",
                     body.get("verdict"), frame.key)
            return False
        verdict = str(body.get("verdict", ""))
        answer = ANSWERS.get(verdict, self.review_as)
        total_ms = (now - entry.captured_mono) * 1000
        self.total_ms.append(total_ms)
        self.added_ms.append(max(0.0, total_ms - http_ms))
        self.answered += 1
        self._signals.put(LineSignal(answer=answer, verdict=verdict, part_id=frame.part_id,
                                     inspection_id=body.get("id"), station=self.station, key=frame.key,
                                     decided_by="service", latency_ms=total_ms))
        return True

    def refuse(self, frame: SpooledFrame, *, why: str) -> None:
        """A frame that will never get a verdict (refused by the service, dropped by the spool):
        the line hears the safe default now."""
        now = time.monotonic()
        with self._lock:
            entry = self._pending.pop(frame.key, None)
        captured = entry.captured_mono if entry else now
        self._signals.put(LineSignal(answer=self.safe_default, verdict=None, part_id=frame.part_id,
                                     inspection_id=None, station=self.station, key=frame.key,
                                     decided_by=why, latency_ms=(now - captured) * 1000))

    @property
    def waiting(self) -> int:
        with self._lock:
            return len(self._pending)

    def _deadlines(self) -> None:
        while True:
            with self._lock:
                while not self._stop and (not self._heap or self._heap[0][0] > time.monotonic()):
                    timeout = self._heap[0][0] - time.monotonic() if self._heap else None
                    self._lock.wait(timeout)
                if self._stop:
                    return
                _, key = heapq.heappop(self._heap)
                entry = self._pending.pop(key, None)
            if entry is None:  # answered in time
                continue
            self.misses += 1
            if self.on_miss:
                self.on_miss()
            log.warning("no verdict for %s within %.0f ms: the line is told %s", key, self.deadline_s * 1000,
                        self.safe_default.value)
            self._signals.put(LineSignal(answer=self.safe_default, verdict=None, part_id=entry.part_id,
                                         inspection_id=None, station=self.station, key=key, decided_by="deadline",
                                         latency_ms=(time.monotonic() - entry.captured_mono) * 1000))

    def _dispatch(self) -> None:
        while (signal := self._signals.get()) is not None:
            self.outputs.send(signal)

    def latency_summary(self) -> dict[str, float | int]:
        """Median and p95 of the agent's added latency and of capture-to-answer, in ms."""

        def pct(values: list[float], q: float) -> float:
            ordered = sorted(values)
            return round(ordered[min(len(ordered) - 1, int(q * len(ordered)))], 2) if ordered else 0.0

        added, total = list(self.added_ms), list(self.total_ms)
        return {"n": len(added), "added_ms_p50": round(statistics.median(added), 2) if added else 0.0,
                "added_ms_p95": pct(added, 0.95), "total_ms_p50": round(statistics.median(total), 2) if total else 0.0,
                "total_ms_p95": pct(total, 0.95)}

    def close(self) -> None:
        with self._lock:
            self._stop = True
            self._lock.notify_all()
        self._signals.put(None)
        for thread in self._threads:
            thread.join(timeout=10)
