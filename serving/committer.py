"""Group commit: the frames judged together are written together, and answered only after.

A frame's verdict is answered only once its record (and its image, if kept) is on stable
storage: a durable write is an fsync, and an fsync costs the same for one record as for
forty. So the committer's one writer thread takes every frame that is waiting, judges each
(boxes and rules, the `job` it was given), writes their images (each file fsynced, each folder
fsynced once: `ImageStore.put_many`), commits their records in one transaction (one fsync of
SQLite's WAL or PostgreSQL's: `RecordStore.save_many`), and only then answers them all.

Groups form by themselves: the frames of one micro-batch are handed over in the same turn of
the event loop, and frames that arrive while a group is being written make the next group.
`max_wait_ms` (QC_COMMIT_WAIT_MS) lets a group's first frame wait for company as well.

Durability is unchanged: nothing is answered before its group is committed. A frame that
fails inside a group fails alone: a job that raises, an image that cannot be written, a record
the database refuses (a retried Idempotency-Key, a value it cannot store) reach that frame's
caller only; the group's transaction is then redone record by record.

Example::

    committer = GroupCommitter(store=store, images=images, max_group=64, max_wait_ms=0)
    await committer.start()
    written, decision = await committer.submit(lambda: (Write(record, jpeg, "jpeg"), decision))
    written.record, written.created, written.group_size, written.store_ms
    await committer.close()   # writes what is queued
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from typing import Any

from inspection.store.images import ImageStorage
from inspection.store.records import InspectionRecord, RecordStore
from serving.batcher import collect


@dataclass
class Write:
    """What one frame stores: its record, and the image bytes as received when it is kept
    (stored first: a record never names an image that is not on disk)."""

    record: InspectionRecord
    image: bytes | None = None
    image_format: str = "jpeg"


@dataclass(frozen=True)
class Written:
    record: InspectionRecord  # as committed, or the original one for a retried key
    created: bool  # False: the station already had a record with this Idempotency-Key
    group_size: int  # frames committed in the same transaction
    store_ms: float  # the group's image and record writes, fsyncs included


Job = Callable[[], tuple[Write, Any]]  # runs in the writer thread: the Write, and anything for the caller


@dataclass
class _Item:
    job: Job
    future: asyncio.Future


class GroupCommitter:
    def __init__(self, *, store: RecordStore, images: ImageStorage, max_group: int = 64,
                 max_wait_ms: float = 0.0, on_group: Callable[[int, float], None] | None = None) -> None:
        self.store, self.images = store, images
        self.max_group, self.max_wait = max_group, max_wait_ms / 1000
        self._on_group = on_group
        # Unbounded: the micro-batcher's queue already bounds the frames in flight.
        self._queue: asyncio.Queue[_Item] = asyncio.Queue()
        # One writer: a SQLite database takes one writer at a time anyway, and one thread
        # makes the groups as large as the load allows.
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="commit")
        self._task: asyncio.Task | None = None

    async def start(self) -> None:
        self._task = asyncio.create_task(self._loop(), name="group-committer")

    async def submit(self, job: Job) -> tuple[Written, Any]:
        """Run `job` and store its Write with the group; returns once it is on stable storage.
        The write happens even if the caller stops waiting (a client that went away can retry
        with its Idempotency-Key and get the record)."""
        future = asyncio.get_running_loop().create_future()
        # Read the outcome even when nobody awaits it any more, so that a failure of a frame
        # whose caller went away is not logged as "never retrieved".
        future.add_done_callback(lambda done: done.cancelled() or done.exception())
        self._queue.put_nowait(_Item(job, future))
        return await asyncio.shield(future)

    async def close(self) -> None:
        """Write every queued frame, then stop."""
        await self._queue.join()
        if self._task:
            self._task.cancel()
            await asyncio.gather(self._task, return_exceptions=True)
        self._executor.shutdown(wait=True)

    async def _collect(self) -> list[_Item]:
        return await collect(self._queue, most=self.max_group, wait_s=self.max_wait)

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            group = await self._collect()
            try:
                try:
                    results = await loop.run_in_executor(self._executor, self._write, [i.job for i in group])
                except Exception as error:  # noqa: BLE001 - a bug in the writer itself: every frame learns it
                    results = [error] * len(group)
                for item, result in zip(group, results, strict=True):
                    if item.future.done():
                        continue
                    if isinstance(result, BaseException):
                        item.future.set_exception(result)
                    else:
                        item.future.set_result(result)
            finally:
                for _ in group:
                    self._queue.task_done()

    def _write(self, jobs: list[Job]) -> list[tuple[Written, Any] | Exception]:
        """The writer thread's work for one group: judge, store images, commit records."""
        results: list[tuple[Written, Any] | Exception | None] = [None] * len(jobs)
        writes: dict[int, tuple[Write, Any]] = {}
        for i, job in enumerate(jobs):
            try:
                writes[i] = job()
            except Exception as error:  # noqa: BLE001 - this frame's own failure
                results[i] = error
        started = time.monotonic()
        kept = [(i, write.image, write.image_format) for i, (write, _) in writes.items() if write.image is not None]
        stored = self.images.put_many([(image, image_format) for _, image, image_format in kept])
        for (i, _, _), sha in zip(kept, stored, strict=True):
            if isinstance(sha, Exception):
                results[i] = sha  # its record is not committed: it would name a missing image
                del writes[i]
            else:
                writes[i][0].record.image_sha256 = sha
        order = list(writes)
        saved = self.store.save_many([writes[i][0].record for i in order])
        store_ms = (time.monotonic() - started) * 1000
        if self._on_group:
            self._on_group(len(order), store_ms)
        for i, outcome in zip(order, saved, strict=True):
            if isinstance(outcome, Exception):
                results[i] = outcome
            else:
                record, created = outcome
                results[i] = (Written(record, created, len(order), store_ms), writes[i][1])
        return results  # type: ignore[return-value]  # every slot is filled above
