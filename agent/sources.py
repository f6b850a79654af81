"""Where frames come from: a camera, an RTSP stream, a video file, a watched folder, a glob.

Example::

    source = open_source(SourceConfig(uri="/data/incoming"), ledger=Path("spool/captured.txt"))
    source.open()                       # SourceError with a clear reason if it cannot
    captured = source.read()            # a Captured, or None when nothing is new yet

`read()` raises `SourceError` when the source broke (camera unplugged, stream gone, file
unreadable) and `SourceExhausted` when a video or glob has given every frame. The agent
answers a SourceError with one log line and a reopen after a backoff (agent/runner.py),
never with a crash or a busy loop.

Folder and glob sources take each file once: a file is taken when its size and modification
time have not changed for `settle_s` (a camera or a copy still writing it would change them)
and it decodes; taken names go to a ledger file (appended and fsynced after the frame is in
the spool), so a restarted agent does not take them again. The capture time of a file is its
modification time, so a file taken twice still gets the same Idempotency-Key.
"""

from __future__ import annotations

import glob as globbing
import os
import time
from dataclasses import dataclass
from pathlib import Path

import cv2
import numpy as np

from agent.config import SourceConfig, SourceKind, infer_source_kind
from inspection.detect import imaging
from inspection.errors import ImageError

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp"}
# A folder file that stays undecodable this long after it stopped changing is reported as
# unreadable; before that it may be a writer that paused (a camera flushing in bursts).
GIVE_UP_S = 5.0


class SourceError(Exception):
    """The source cannot deliver now; the message says which source and why."""


class UnreadableFile(SourceError):
    """One file of a folder or glob cannot be read; the others still can."""


class SourceExhausted(Exception):
    """A video file or glob has delivered every frame."""


@dataclass
class Captured:
    image: np.ndarray  # BGR
    capture_ns: int  # wall-clock time the frame was taken (ns since the epoch)
    name: str | None = None  # folder/glob: the file's name without its suffix
    path: Path | None = None


class Source:
    description = "source"

    def open(self) -> None: ...

    def read(self) -> Captured | None:
        raise NotImplementedError

    def taken(self, captured: Captured) -> None:
        """The frame is safely in the spool."""

    def close(self) -> None: ...


class VideoSource(Source):
    """A camera index, a stream URL or a video file, through OpenCV's VideoCapture."""

    def __init__(self, config: SourceConfig) -> None:
        self.config = config
        # SourceConfig fills the kind from the uri; a config built without validation gets it here.
        self.kind: SourceKind = config.kind or infer_source_kind(config.uri)
        self.description = {SourceKind.CAMERA: f"camera {config.uri}", SourceKind.STREAM: f"stream {config.uri}",
                            SourceKind.VIDEO: f"video file {config.uri}"}[self.kind]
        self._capture: cv2.VideoCapture | None = None

    def open(self) -> None:
        self.close()
        timeout_ms = int(self.config.open_timeout_s * 1000)
        # Without these an RTSP URL that does not answer blocks for ~30 s inside FFmpeg.
        params = [cv2.CAP_PROP_OPEN_TIMEOUT_MSEC, timeout_ms, cv2.CAP_PROP_READ_TIMEOUT_MSEC, timeout_ms]
        if self.kind is SourceKind.CAMERA:
            capture = cv2.VideoCapture(int(self.config.uri), cv2.CAP_ANY, params)
        else:
            if self.kind is SourceKind.VIDEO and not Path(self.config.uri).is_file():
                raise SourceError(f"{self.description}: no such file")
            capture = cv2.VideoCapture(self.config.uri, cv2.CAP_FFMPEG, params)
        if not capture.isOpened():
            capture.release()
            hint = {SourceKind.CAMERA: "is it plugged in, and is the index right (ls /dev/video*)?",
                    SourceKind.STREAM: f"does the camera answer, and is the URL right? (waited "
                                       f"{self.config.open_timeout_s:g} s)",
                    SourceKind.VIDEO: "is it a video OpenCV's FFmpeg can read?"}[self.kind]
            raise SourceError(f"cannot open {self.description}: {hint}")
        self._capture = capture

    def read(self) -> Captured | None:
        if self._capture is None:
            raise SourceError(f"{self.description} is not open")
        ok, image = self._capture.read()
        now = time.time_ns()
        if not ok or image is None:
            if self.kind is SourceKind.VIDEO:
                raise SourceExhausted(self.description)
            raise SourceError(f"{self.description} stopped delivering frames")
        return Captured(image=image, capture_ns=now)

    def close(self) -> None:
        if self._capture is not None:
            self._capture.release()
            self._capture = None


class FileSource(Source):
    """A watched folder (new files, taken once written completely) or a glob pattern."""

    def __init__(self, config: SourceConfig, *, ledger: Path | None = None) -> None:
        self.config = config
        # SourceConfig fills the kind from the uri; a config built without validation gets it here.
        self.kind: SourceKind = config.kind or infer_source_kind(config.uri)
        self.description = f"{'folder' if self.kind is SourceKind.FOLDER else 'glob'} {config.uri}"
        self.ledger = ledger
        self.done: set[str] = set()
        self._seen: dict[str, tuple[int, int, float]] = {}  # path -> (size, mtime_ns, first seen unchanged)
        self._pending: list[Path] = []
        self._last_poll = 0.0
        self._unreadable: dict[str, tuple[int, int]] = {}  # path -> (size, mtime_ns) when refused

    def open(self) -> None:
        if self.kind is SourceKind.FOLDER and not Path(self.config.uri).is_dir():
            raise SourceError(f"cannot watch {self.description}: no such folder")
        if self.ledger is not None and self.ledger.is_file():
            self.done = set(self.ledger.read_text().splitlines())

    def _candidates(self) -> list[Path]:
        if self.kind is SourceKind.FOLDER:
            try:
                entries = list(os.scandir(self.config.uri))
            except OSError as error:
                raise SourceError(f"cannot list {self.description}: {error.strerror}") from error
            paths = [Path(e.path) for e in entries if e.is_file() and not e.name.startswith(".")]
        else:
            paths = [Path(p) for p in globbing.glob(self.config.uri, recursive=True)]
        return sorted(p for p in paths if p.suffix.lower() in IMAGE_SUFFIXES and str(p) not in self.done)

    def _poll(self) -> None:
        now = time.monotonic()
        ready: list[Path] = []
        for path in self._candidates():
            try:
                stat = path.stat()
            except FileNotFoundError:
                continue
            key = str(path)
            if self._unreadable.get(key) == (stat.st_size, stat.st_mtime_ns):
                continue  # reported once; taken again only if it changes
            seen = self._seen.get(key)
            if seen is None or seen[:2] != (stat.st_size, stat.st_mtime_ns):
                self._seen[key] = (stat.st_size, stat.st_mtime_ns, now)
                if self.kind is SourceKind.GLOB:  # a glob names files that already exist
                    ready.append(path)
                continue
            if now - seen[2] >= self.config.settle_s and stat.st_size > 0:
                ready.append(path)
        queued = set(self._pending)
        self._pending.extend(p for p in ready if p not in queued)

    def read(self) -> Captured | None:
        if not self._pending and time.monotonic() - self._last_poll >= self.config.poll_s:
            self._last_poll = time.monotonic()
            self._poll()
            if not self._pending and self.kind is SourceKind.GLOB:
                raise SourceExhausted(self.description)
        while self._pending:
            path = self._pending.pop(0)
            try:
                data = path.read_bytes()
                mtime_ns = path.stat().st_mtime_ns
            except OSError:
                continue  # moved away meanwhile
            try:  # the core's decoder: a cut-off JPEG or PNG is refused, not judged half grey
                image = imaging.decode(data)
            except ImageError as error:
                seen = self._seen.get(str(path))
                unchanged_s = time.monotonic() - seen[2] if seen else 0.0
                if self.kind is SourceKind.FOLDER and unchanged_s < max(GIVE_UP_S, 10 * self.config.settle_s):
                    continue  # perhaps still being written: look again at the next poll
                self._unreadable[str(path)] = (len(data), mtime_ns)
                self._seen.pop(str(path), None)
                raise UnreadableFile(f"{path} in {self.description} is not a readable image ({error}); "
                                     "it is skipped until it changes") from error
            return Captured(image=image, capture_ns=mtime_ns, name=path.stem, path=path)
        return None

    def taken(self, captured: Captured) -> None:
        if captured.path is None:
            return
        key = str(captured.path)
        self.done.add(key)
        self._seen.pop(key, None)
        if self.ledger is not None:
            with open(self.ledger, "a") as file:
                file.write(key + "\n")
                file.flush()
                os.fsync(file.fileno())


def open_source(config: SourceConfig, *, ledger: Path | None = None) -> Source:
    if config.kind in (SourceKind.FOLDER, SourceKind.GLOB):
        return FileSource(config, ledger=ledger)
    return VideoSource(config)
