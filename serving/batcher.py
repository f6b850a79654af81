"""Micro-batching: frames from concurrent requests share one `session.run`.

A GPU runs 8 frames in little more time than 1, and on CPU a batch costs no more per frame
than single runs, so the service queues prepared frames and a single worker takes up to
`max_batch` of them at a time. The first frame of a batch waits at most `max_wait_ms` for
company; while a batch runs, new frames pile up and form the next one, so batches grow with
load by themselves.

Backpressure: the queue holds at most `queue_size` frames; beyond that `submit` raises
`QueueFull` at once (HTTP 503 with Retry-After), instead of letting latency grow without
bound. A frame whose deadline passes before its batch starts is dropped with
`DeadlineExceeded` (HTTP 504): the station retries with the same Idempotency-Key.

Example::

    from serving.pipeline import Frame, run_batch

    batcher: MicroBatcher[Frame, LoadedModel] = MicroBatcher(
        run=run_batch, current=lambda: manager.current, max_batch=8, max_wait_ms=3, queue_size=64)
    await batcher.start()
    result = await batcher.submit(Frame.decode(detector, jpeg, settings=settings),
                                  deadline=time.monotonic() + 5)
    result.output, result.model.version, result.queue_ms   # this frame's row, who ran it
    await batcher.close()   # drains what is queued

The batcher does not know what it carries: `run(model, frames)` gives one result per frame
(or an exception for a frame it refuses alone), and `current()` names the model for the next
batch. The service carries `Frame | TensorFrame` and `LoadedModel` (serving/pipeline.py).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any, Generic, TypeVar

FrameT = TypeVar("FrameT")
ModelT = TypeVar("ModelT")


class QueueFull(Exception):
    pass


class DeadlineExceeded(Exception):
    pass


class ShuttingDown(Exception):
    pass


@dataclass
class _Item(Generic[FrameT]):
    frame: FrameT
    deadline: float
    future: asyncio.Future
    enqueued: float = field(default_factory=time.monotonic)


@dataclass(frozen=True)
class BatchResult(Generic[ModelT]):
    output: Any  # what `run` gave this frame (the service: raw output row and letterbox info)
    model: ModelT  # the model that ran it (hot swaps change it between batches)
    queue_ms: float
    inference_ms: float
    batch_size: int


ItemT = TypeVar("ItemT")


async def collect(queue: asyncio.Queue[ItemT], *, most: int, wait_s: float) -> list[ItemT]:
    """The next group from `queue`: waits for a first item, then takes what is waiting, and
    what arrives within `wait_s` of the first, up to `most` items. The micro-batcher's batches
    and the group committer's groups are both made this way."""
    group = [await queue.get()]
    until = time.monotonic() + wait_s
    while len(group) < most:
        try:
            group.append(queue.get_nowait())
            continue
        except asyncio.QueueEmpty:
            pass
        remaining = until - time.monotonic()
        if remaining <= 0:
            break
        try:
            group.append(await asyncio.wait_for(queue.get(), remaining))
        except TimeoutError:
            break
    return group


class MicroBatcher(Generic[FrameT, ModelT]):
    def __init__(
        self,
        *,
        run: Callable[[ModelT, list[FrameT]], Sequence[Any]],
        current: Callable[[], ModelT],
        max_batch: int,
        max_wait_ms: float,
        queue_size: int,
        workers: int = 1,
        on_batch: Callable[[int, float], None] | None = None,
        can_batch: Callable[[], bool] = lambda: True,
    ) -> None:
        self._run, self._current = run, current
        self.max_batch, self.max_wait = max_batch, max_wait_ms / 1000
        self._queue: asyncio.Queue[_Item[FrameT]] = asyncio.Queue(maxsize=queue_size)
        self._on_batch = on_batch
        # A model with a static batch of 1 runs frames one after another anyway: its first
        # frame need not wait for company (3 ms of every frame's latency at low load).
        self._can_batch = can_batch
        # `workers` batches may run at once, each in its own inference thread. One run spread
        # over all cores gives the lowest latency; on CPU, one single-threaded run per core
        # gives more frames/s (26 against 21 for YOLO26n at 640 on 2 cores, BENCHMARKS.md):
        # small layers do not split well across threads. A GPU needs one.
        self.workers = workers
        self._executor = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="inference")
        self._tasks: list[asyncio.Task] = []
        self._closing = False

    @property
    def depth(self) -> int:
        return self._queue.qsize()

    async def start(self) -> None:
        self._tasks = [asyncio.create_task(self._loop(), name=f"micro-batcher-{i}")
                       for i in range(self.workers)]

    async def submit(self, frame: FrameT, *, deadline: float) -> BatchResult[ModelT]:
        if self._closing:
            raise ShuttingDown("the service is shutting down")
        future = asyncio.get_running_loop().create_future()
        try:
            self._queue.put_nowait(_Item(frame, deadline, future))
        except asyncio.QueueFull as error:
            raise QueueFull(f"{self._queue.maxsize} frames already waiting") from error
        return await future

    async def submit_many(self, frames: list[FrameT], *, deadline: float) -> list[BatchResult[ModelT]]:
        """Several frames of one request, queued all or none: a request refused half-way would
        leave its other frames to be inferred for nobody. They queue back to back, so they
        usually share one batch."""
        if self._closing:
            raise ShuttingDown("the service is shutting down")
        free = self._queue.maxsize - self._queue.qsize()
        if len(frames) > free:
            raise QueueFull(f"{self._queue.qsize()} frames already waiting, room for {free}, "
                            f"not {len(frames)}")
        loop = asyncio.get_running_loop()
        items = [_Item(frame, deadline, loop.create_future()) for frame in frames]
        for item in items:
            self._queue.put_nowait(item)  # no await in between: nothing else can take the room
        return list(await asyncio.gather(*(item.future for item in items)))

    async def close(self) -> None:
        """Stop taking frames, finish every queued one, then stop the worker."""
        self._closing = True
        await self._queue.join()
        for task in self._tasks:
            task.cancel()
        await asyncio.gather(*self._tasks, return_exceptions=True)
        self._executor.shutdown(wait=True)

    async def _collect(self) -> list[_Item[FrameT]]:
        return await collect(self._queue, most=self.max_batch,
                             wait_s=self.max_wait if self._can_batch() else 0.0)

    async def _loop(self) -> None:
        loop = asyncio.get_running_loop()
        while True:
            batch = await self._collect()
            try:
                now = time.monotonic()
                live = []
                for item in batch:
                    if item.future.cancelled():
                        continue  # the client went away
                    if now > item.deadline:
                        item.future.set_exception(DeadlineExceeded("deadline passed while queued"))
                        continue
                    live.append(item)
                if not live:
                    continue
                started = time.monotonic()
                try:
                    model = self._current()
                    outputs = await loop.run_in_executor(
                        self._executor, self._run, model, [item.frame for item in live]
                    )
                except Exception as error:  # noqa: BLE001 - the model failed: every frame of the batch learns why
                    for item in live:
                        if not item.future.done():
                            item.future.set_exception(error)
                    continue
                inference_ms = (time.monotonic() - started) * 1000
                if self._on_batch:
                    self._on_batch(len(live), inference_ms)
                for item, output in zip(live, outputs, strict=True):
                    if item.future.done():
                        continue
                    if isinstance(output, Exception):
                        # `run` refused this frame alone (a tensor sized for the model before a
                        # hot swap); the rest of its batch must not fail with it.
                        item.future.set_exception(output)
                    else:
                        item.future.set_result(BatchResult(
                            output=output, model=model,
                            queue_ms=(started - item.enqueued) * 1000,
                            inference_ms=inference_ms, batch_size=len(live)))
            finally:
                for _ in batch:
                    self._queue.task_done()
