"""The zero-loss spool: every captured frame is on disk, fsynced, before anyone is asked about it.

Example::

    spool = Spool(Path("/var/lib/qc-agent/spool"), max_frames=20000, max_bytes=2 * 1024**3)
    spool.put(SpooledFrame.new(jpeg, part_id="A123", capture_ns=time.time_ns()))
    frame = spool.oldest()          # capture order, across restarts
    ...                              # post it; once the service has recorded it:
    spool.remove(frame)

One file per frame, `<seq>.frame`: a 4-byte header length, a JSON header (part id, capture
time, idempotency key, the product on the line), then the JPEG: a frame replayed after a
changeover is still judged as the product it showed. Written to a temporary name, fsynced, renamed, and the
folder fsynced, so after kill -9 or a power cut a frame is either whole or absent, never half
(the same recipe as inspection/durable.py). Leftover temporary files are removed on open.

Bounded by frame count and bytes. When full, `DropPolicy` decides which frame goes; each drop
is counted in `counters.json` (written atomically, so the count survives restarts too) and
logged, and the heartbeat reports it.

A frame is removed only after the service answered it; a crash between the answer and the
removal re-sends the frame, and its Idempotency-Key makes the service return the first record
instead of making a second one. Removal therefore needs no folder fsync.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import struct
import threading
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path

from agent.config import DropPolicy
from inspection.durable import fsync_folder, write_json_atomic

log = logging.getLogger("qc.agent.spool")

SUFFIX = ".frame"
TEMP_PREFIX = ".incoming-"
MAX_KEY = 128  # the service's limit on Idempotency-Key


def idempotency_key(part_id: str | None, capture_ns: int) -> str:
    """Part id and capture time: the same frame always gets the same key, two frames never do
    (a station captures at most one frame per nanosecond)."""
    stamp = datetime.fromtimestamp(capture_ns / 1e9, UTC).strftime("%Y%m%dT%H%M%S") + f".{capture_ns % 10**9:09d}Z"
    key = f"{part_id or '-'}@{stamp}"
    if len(key) > MAX_KEY:  # a very long part id: keep it recognisable and unique
        key = f"{hashlib.sha256(key.encode()).hexdigest()[:40]}@{stamp}"
    return key


@dataclass
class SpooledFrame:
    jpeg: bytes
    capture_ns: int
    part_id: str | None = None
    key: str = ""
    seq: int = -1  # given by the spool
    product: str | None = None  # the product on the line when it was captured (X-Product)
    # What the line was (or was not) told: frames found in the spool after a restart are
    # past their deadline, and the line has long moved on.
    meta: dict = field(default_factory=dict)

    @classmethod
    def new(cls, jpeg: bytes, *, capture_ns: int, part_id: str | None = None, product: str | None = None,
            **meta) -> SpooledFrame:
        return cls(jpeg=jpeg, capture_ns=capture_ns, part_id=part_id,
                   key=idempotency_key(part_id, capture_ns), product=product, meta=meta)

    def header(self) -> bytes:
        return json.dumps({"capture_ns": self.capture_ns, "part_id": self.part_id, "key": self.key,
                           "product": self.product, "meta": self.meta}, sort_keys=True).encode()


class SpoolCorrupt(Exception):
    pass


class Spool:
    def __init__(self, folder: Path, *, max_frames: int = 20000, max_bytes: int = 2 * 1024**3,
                 drop_policy: DropPolicy = DropPolicy.OLDEST, fsync: bool = True) -> None:
        self.folder = Path(folder)
        self.frames_dir = self.folder / "frames"
        self.frames_dir.mkdir(parents=True, exist_ok=True)
        self.max_frames, self.max_bytes = max_frames, max_bytes
        self.drop_policy, self.fsync = drop_policy, fsync
        self._lock = threading.Lock()
        self._ready = threading.Condition(self._lock)
        self._counters_path = self.folder / "counters.json"
        self.counters: dict[str, int] = {"dropped": 0, "deadline_misses": 0, "rejected": 0}
        if self._counters_path.is_file():
            try:
                self.counters.update(json.loads(self._counters_path.read_text()))
            except (OSError, ValueError):
                log.warning("spool counters %s unreadable; counting from zero", self._counters_path)
        for temp in self.frames_dir.glob(f"{TEMP_PREFIX}*"):  # a write cut short by a crash
            temp.unlink(missing_ok=True)
        self._sizes: dict[int, int] = {}
        for path in self.frames_dir.glob(f"*{SUFFIX}"):
            try:
                self._sizes[int(path.stem)] = path.stat().st_size
            except (ValueError, FileNotFoundError):
                continue
        self._next_seq = max(self._sizes, default=-1) + 1
        self.rejected_dir = self.folder / "rejected"

    # -- state -----------------------------------------------------------------------------

    @property
    def depth(self) -> int:
        with self._lock:
            return len(self._sizes)

    @property
    def bytes(self) -> int:
        with self._lock:
            return sum(self._sizes.values())

    def count(self, name: str, n: int = 1) -> int:
        """Add to a persistent counter (drops, deadline misses, rejected frames)."""
        with self._lock:
            self.counters[name] = self.counters.get(name, 0) + n
            write_json_atomic(self._counters_path, self.counters)
            return self.counters[name]

    # -- writing ---------------------------------------------------------------------------

    def put(self, frame: SpooledFrame) -> bool:
        """Store `frame` durably; False when the drop policy refused it (counted)."""
        header = frame.header()
        blob = struct.pack(">I", len(header)) + header + frame.jpeg
        with self._lock:
            dropped: list[int] = []
            while self._sizes and (len(self._sizes) >= self.max_frames
                                   or sum(self._sizes.values()) + len(blob) > self.max_bytes):
                if self.drop_policy is DropPolicy.NEWEST:
                    self._count_drop_locked(1, f"spool full ({len(self._sizes)} frames): the new frame "
                                               f"{frame.key} is dropped (policy {self.drop_policy})")
                    return False
                oldest = min(self._sizes)
                (self.frames_dir / f"{oldest:016d}{SUFFIX}").unlink(missing_ok=True)
                del self._sizes[oldest]
                dropped.append(oldest)
            if dropped:
                self._count_drop_locked(len(dropped), f"spool full: dropped the {len(dropped)} oldest frame(s) "
                                                      f"(policy {self.drop_policy})")
            seq = self._next_seq
            self._next_seq += 1
            frame.seq = seq
        path = self.frames_dir / f"{seq:016d}{SUFFIX}"
        temp = self.frames_dir / f"{TEMP_PREFIX}{seq:016d}"
        with open(temp, "wb") as file:
            file.write(blob)
            if self.fsync:
                file.flush()
                os.fsync(file.fileno())
        os.replace(temp, path)
        if self.fsync:
            fsync_folder(self.frames_dir)
        with self._ready:
            self._sizes[seq] = len(blob)
            self._ready.notify_all()
        return True

    def _count_drop_locked(self, n: int, message: str) -> None:
        self.counters["dropped"] = self.counters.get("dropped", 0) + n
        write_json_atomic(self._counters_path, self.counters)
        log.error("%s; %d dropped in all", message, self.counters["dropped"])

    # -- reading ---------------------------------------------------------------------------

    def oldest(self, wait_s: float = 0.0) -> SpooledFrame | None:
        """The oldest frame still to send (capture order), waiting up to `wait_s` for one."""
        with self._ready:
            if not self._sizes and wait_s > 0:
                self._ready.wait(wait_s)
            while self._sizes:
                seq = min(self._sizes)
                try:
                    return self._read(seq)
                except FileNotFoundError:  # dropped under us
                    self._sizes.pop(seq, None)
                except SpoolCorrupt as error:  # never written whole: cannot happen after rename
                    log.error("spool frame %d unreadable (%s); moved to %s", seq, error, self.rejected_dir)
                    self._set_aside_locked(seq)
            return None

    def _read(self, seq: int) -> SpooledFrame:
        data = (self.frames_dir / f"{seq:016d}{SUFFIX}").read_bytes()
        if len(data) < 4:
            raise SpoolCorrupt("shorter than its header")
        (length,) = struct.unpack(">I", data[:4])
        try:
            header = json.loads(data[4:4 + length])
        except ValueError as error:
            raise SpoolCorrupt(f"bad header: {error}") from error
        return SpooledFrame(jpeg=data[4 + length:], capture_ns=header["capture_ns"], part_id=header["part_id"],
                            key=header["key"], seq=seq, product=header.get("product"), meta=header.get("meta", {}))

    def remove(self, frame: SpooledFrame) -> None:
        """The service recorded `frame`: forget it."""
        with self._lock:
            (self.frames_dir / f"{frame.seq:016d}{SUFFIX}").unlink(missing_ok=True)
            self._sizes.pop(frame.seq, None)

    def set_aside(self, frame: SpooledFrame, reason: str) -> None:
        """A frame the service refuses for good (not an image, too large): kept for a person
        in `rejected/`, counted, never retried."""
        with self._lock:
            self._set_aside_locked(frame.seq)
            self.counters["rejected"] = self.counters.get("rejected", 0) + 1
            write_json_atomic(self._counters_path, self.counters)
        log.error("frame %s refused by the service (%s); kept in %s", frame.key, reason, self.rejected_dir)

    def _set_aside_locked(self, seq: int) -> None:
        self.rejected_dir.mkdir(exist_ok=True)
        source = self.frames_dir / f"{seq:016d}{SUFFIX}"
        if source.exists():
            os.replace(source, self.rejected_dir / source.name)
        self._sizes.pop(seq, None)

    def wake(self) -> None:
        with self._ready:
            self._ready.notify_all()
