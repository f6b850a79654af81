"""The agent: capture → JPEG → spool (fsynced) → post in capture order → tell the line.

Example::

    config = AgentConfig.load("station.yaml")
    agent = Agent(config)
    signal.signal(signal.SIGTERM, lambda *_: agent.stop())
    agent.run()                  # returns when stopped, or when a glob/video is done and sent
    print(agent.report())

Threads: the capture loop (the caller's), the sender (oldest spooled frame first; backoff with
jitter while the service is away), the line board's deadline and dispatch threads
(agent/line.py), the heartbeat, and an external trigger's listener. Every frame is in the
spool before it is posted, so the service being away, a kill -9 or a power cut loses none; the
spool's Idempotency-Keys make the re-sends harmless.

A source that fails (no camera, a silent RTSP URL, a missing folder) is logged once, with the
reason, and reopened after a backoff (1 s doubling to 60 s by default); the agent never exits
for it and never spins. The same holds for the service.
"""

from __future__ import annotations

import logging
import queue
import threading
import time
from collections import deque
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING

import cv2

from agent import AGENT_VERSION
from agent.backoff import Backoff
from agent.changeover import Follower, follow_changeovers
from agent.client import Outcome, ServiceClient
from agent.config import AgentConfig, PartIdFrom, SourceKind, TriggerMode
from agent.line import LineBoard
from agent.outputs import open_outputs
from agent.sources import (
    Captured,
    Source,
    SourceError,
    SourceExhausted,
    UnreadableFile,
    open_source,
)
from agent.spool import Spool, SpooledFrame
from agent.triggers import FrameGate, Listener, TriggerEvent, start_listener

if TYPE_CHECKING:
    from agent.codes import CodeReader

log = logging.getLogger("qc.agent")


def _iso(ns: int | None) -> str | None:
    return datetime.fromtimestamp(ns / 1e9, UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z") \
        if ns else None


class Agent:
    def __init__(self, config: AgentConfig, *, source: Source | None = None, client: ServiceClient | None = None,
                 stdout=None, events: queue.Queue | None = None) -> None:
        self.config = config
        spool_dir = Path(config.spool.dir)
        self.spool = Spool(spool_dir, max_frames=config.spool.max_frames, max_bytes=config.spool.max_bytes,
                           drop_policy=config.spool.drop_policy, fsync=config.spool.fsync)
        self.source = source or open_source(config.source, ledger=spool_dir / "captured.txt")
        self.client = client or ServiceClient(
            config.service.url, key=config.service.api_key(), station=config.station,
            connect_timeout_s=config.service.connect_timeout_s, timeout_s=config.service.timeout_s)
        self.outputs = open_outputs(config.line.outputs, station=config.station, stdout=stdout)
        self.board = LineBoard(self.outputs, station=config.station, deadline_s=config.line.deadline_ms / 1000,
                               safe_default=config.line.safe_default, review_as=config.line.review_as,
                               on_miss=lambda: self.spool.count("deadline_misses"))
        self.events: queue.Queue[TriggerEvent] = events or queue.Queue()
        self._listener: Listener | None = None
        self._stop = threading.Event()
        self._capture_done = threading.Event()
        self._idle = threading.Event()
        self.captured = self.sent = 0
        self.last_capture_ns: int | None = None
        self.last_verdict_ns: int | None = None
        self.source_problem: str | None = None
        self.service_problem: str | None = None
        self.capture_ms: deque[float] = deque(maxlen=10000)  # encode + spool write, per frame
        self._code_reader: CodeReader | None = None  # made when the first code is read
        # The product on the line as the PLC last named it (config.changeover); None: none named,
        # and frames are judged as the station's current product at the service.
        self.product: str | None = None
        self.changeovers = 0
        self._follower: Follower | None = None
        self._follower_lock = threading.Lock()

    # -- lifecycle ---------------------------------------------------------------------------

    def __enter__(self) -> Agent:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def stop(self) -> None:
        self._stop.set()
        self.spool.wake()

    @property
    def stopping(self) -> bool:
        return self._stop.is_set()

    def run(self) -> None:
        trigger = self.config.trigger
        if trigger.mode is TriggerMode.EXTERNAL and self._listener is None:
            self._listener = start_listener(trigger.external, self.events)
        threads = [threading.Thread(target=self._send_loop, name="sender", daemon=True),
                   threading.Thread(target=self._heartbeat_loop, name="heartbeat", daemon=True)]
        if self.config.changeover is not None:
            threads.append(threading.Thread(target=self._follow, name="changeover", daemon=True))
        for thread in threads:
            thread.start()
        try:
            self._capture_loop()
        finally:
            self._capture_done.set()
            self.spool.wake()
            if self.config.source.exit_when_done:
                while not self._stop.is_set() and self.spool.depth:
                    self._stop.wait(0.05)
                deadline = time.monotonic() + self.config.line.deadline_ms / 1000 + 0.5
                while self.board.waiting and time.monotonic() < deadline:
                    time.sleep(0.02)
            self._stop.set()
            self.spool.wake()
            for thread in threads:
                thread.join(timeout=self.config.service.timeout_s + 5)

    def close(self) -> None:
        self.stop()
        if self._listener is not None:
            self._listener.stop()
        with self._follower_lock:
            follower, self._follower = self._follower, None
        if follower is not None:
            follower.stop()
        self.board.close()
        self.outputs.close()
        self.source.close()
        self.client.close()

    # -- capture -----------------------------------------------------------------------------

    def _capture_loop(self) -> None:
        source_cfg = self.config.source
        backoff = Backoff(initial_s=source_cfg.retry_initial_s, max_s=source_cfg.retry_max_s)
        gate = FrameGate(self.config.trigger)
        external = self.config.trigger.mode is TriggerMode.EXTERNAL
        live = source_cfg.kind in (SourceKind.CAMERA, SourceKind.STREAM, SourceKind.VIDEO)
        min_gap = 1.0 / source_cfg.fps if source_cfg.fps else 0.0
        next_at = time.monotonic()
        opened = False
        held: Captured | None = None  # external trigger, files: the next file, waiting for its trigger
        while not self._stop.is_set():
            if not opened:
                try:
                    self.source.open()
                    opened = True
                    if self.source_problem:
                        log.warning("%s works again", self.source.description)
                        self.source_problem = None
                    backoff.reset()
                except SourceError as error:
                    self._source_failed(str(error), backoff)
                    continue
            if held is not None:
                try:
                    trigger = self.events.get(timeout=0.2)
                except queue.Empty:
                    continue
                self._take(held, trigger)
                held = None
                continue
            if min_gap and not external:
                delay = next_at - time.monotonic()
                if delay > 0 and self._stop.wait(delay):
                    break
            try:
                captured = self.source.read()
            except UnreadableFile as error:
                log.error("%s", error)
                continue
            except SourceExhausted:
                log.info("%s: every frame taken", self.source.description)
                return
            except SourceError as error:
                self.source.close()
                opened = False
                self._source_failed(str(error), backoff)
                continue
            if captured is None:
                self._stop.wait(min(source_cfg.poll_s, 0.05))
                continue
            event: TriggerEvent | None = None
            if external and not live:
                held = captured
                continue
            if external:  # a camera runs on: take the first frame read after a trigger
                try:
                    event = self.events.get_nowait()
                except queue.Empty:
                    continue
            elif not gate.wants(captured.image):
                continue
            next_at = max(next_at + min_gap, time.monotonic()) if min_gap else next_at
            self._take(captured, event)

    def _source_failed(self, reason: str, backoff: Backoff) -> None:
        wait = backoff.next()
        if reason != self.source_problem:  # one message per kind of trouble, not one per retry
            log.error("%s; retrying with backoff (up to %g s between tries)", reason, backoff.max_s)
            self.source_problem = reason
        self._stop.wait(wait)

    def _part_id(self, captured: Captured, event: TriggerEvent | None) -> str | None:
        how = self.config.part_id
        if how is PartIdFrom.TRIGGER:
            return event.part_id if event else None
        if how is PartIdFrom.FILENAME:
            return captured.name
        if how is PartIdFrom.CODE:
            if self._code_reader is None:
                from agent.codes import CodeReader

                self._code_reader = CodeReader(self.config.code_formats)
            return self._code_reader.read(captured.image)
        return None

    def _take(self, captured: Captured, event: TriggerEvent | None) -> None:
        started = time.monotonic()
        part_id = self._part_id(captured, event)
        ok, encoded = cv2.imencode(".jpg", captured.image, [cv2.IMWRITE_JPEG_QUALITY, self.config.jpeg_quality])
        if not ok:
            log.error("could not encode a %s frame as JPEG; skipped", captured.image.shape)
            return
        frame = SpooledFrame.new(encoded.tobytes(), capture_ns=captured.capture_ns, part_id=part_id,
                                 product=self.product)
        stored = self.spool.put(frame)
        self.captured += 1
        self.last_capture_ns = captured.capture_ns
        self.source.taken(captured)
        self.capture_ms.append((time.monotonic() - started) * 1000)
        if stored:
            self.board.expect(frame, captured_mono=started)
        else:
            self.board.refuse(frame, why="spool-full")

    # -- product changeover ------------------------------------------------------------------

    def _follow(self) -> None:
        """Start following the PLC's product; a PLC or broker that is not there yet is one
        message and a retry with backoff (frames meanwhile carry the last product named)."""
        config = self.config.changeover
        if config is None:
            return
        backoff = Backoff(initial_s=1.0, max_s=30.0)
        problem = None
        while not self._stop.is_set():
            try:
                follower = follow_changeovers(config, self.changeover)
                with self._follower_lock:
                    if self._stop.is_set():  # closed while it connected: close() has passed
                        follower.stop()
                        return
                    self._follower = follower
                if problem:
                    log.warning("following the product on the line again")
                return
            except Exception as error:  # noqa: BLE001 - asyncua and paho raise many kinds
                if str(error) != problem:
                    log.error("cannot follow the product on the line (%s: %s); retrying with backoff",
                              config.kind, error)
                    problem = str(error)
                self._stop.wait(backoff.next())

    def changeover(self, product: str | None) -> None:
        """The PLC named `product` (None: none): frames captured from now on carry it, and the
        service is told when the config says so (best effort: the frames carry it anyway)."""
        if product == self.product:
            return
        log.info("changeover: %s -> %s", self.product or "no product", product or "no product")
        self.product = product
        self.changeovers += 1
        if self.config.changeover is not None and self.config.changeover.announce:
            threading.Thread(target=self._announce, args=(product,), name="announce", daemon=True).start()

    def _announce(self, product: str | None) -> None:
        answer = self.client.select_product(product)
        if answer.kind is not Outcome.RECORDED:
            log.error("the service was not told the changeover to %s: %s", product or "no product", answer.reason)

    # -- sending -----------------------------------------------------------------------------

    def _send_loop(self) -> None:
        service = self.config.service
        backoff = Backoff(initial_s=service.retry_initial_s, max_s=service.retry_max_s)
        while not self._stop.is_set():
            frame = self.spool.oldest(wait_s=0.2)
            if frame is None:
                continue
            answer = self.client.inspect(frame)
            if answer.kind is Outcome.RECORDED:
                self.spool.remove(frame)
                self.sent += 1
                self.last_verdict_ns = time.time_ns()
                self.board.verdict(frame, answer.body, http_ms=answer.elapsed_ms)
                if self.service_problem:
                    log.warning("the service answers again; %d frame(s) still spooled", self.spool.depth)
                    self.service_problem = None
                backoff.reset()
            elif answer.kind is Outcome.REFUSED:
                self.spool.set_aside(frame, answer.reason)
                self.board.refuse(frame, why="refused")
            else:
                if answer.reason != self.service_problem:
                    hint = "" if answer.kind is Outcome.RETRY else " (a person must fix this; frames wait in the spool)"
                    log.error("%s%s; %d frame(s) spooled, retrying with backoff", answer.reason, hint,
                              self.spool.depth)
                    self.service_problem = answer.reason
                self._stop.wait(backoff.next(answer.retry_after_s))

    # -- health ------------------------------------------------------------------------------

    def health(self) -> dict:
        counters = dict(self.spool.counters)
        return {
            "agent_version": AGENT_VERSION,
            "last_capture_at": _iso(self.last_capture_ns),
            "last_verdict_at": _iso(self.last_verdict_ns),
            "spool_depth": self.spool.depth,
            "dropped": counters.get("dropped", 0),
            "deadline_misses": counters.get("deadline_misses", 0),
            "rejected": counters.get("rejected", 0),
            "captured": self.captured,
            "product": self.product,
            "source_problem": self.source_problem,
            "service_problem": self.service_problem,
            "interval_s": self.config.heartbeat.interval_s,
            "shift": self.config.heartbeat.shift,
        }

    def _heartbeat_loop(self) -> None:
        while True:  # one at start, then every interval_s; a missed one is not worth a retry
            answer = self.client.heartbeat(self.health())
            if answer.kind is not Outcome.RECORDED:
                log.debug("heartbeat not taken: %s", answer.reason)
            if self._stop.wait(self.config.heartbeat.interval_s):
                return

    def report(self) -> dict:
        """What happened in this run: counts, drops, misses, latency."""
        return {**self.health(), "sent": self.sent, "changeovers": self.changeovers, "late_verdicts": self.board.late,
                "answered_in_time": self.board.answered, "misses_this_run": self.board.misses,
                "line_output_failures": self.outputs.failures, "latency": self.board.latency_summary(),
                "capture_ms_p50": (round(sorted(self.capture_ms)[len(self.capture_ms) // 2], 2)
                                   if self.capture_ms else 0.0)}
