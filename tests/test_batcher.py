"""The micro-batcher groups concurrent frames, runs several batches at once when asked, and
refuses frames it cannot take instead of letting latency grow."""

from __future__ import annotations

import asyncio
import time

import numpy as np
import pytest

from serving.batcher import DeadlineExceeded, MicroBatcher, QueueFull


def slow_run(seconds: float):
    def run(model, frames):
        time.sleep(seconds)
        return [np.array([len(frames)]) for _ in frames]

    return run


async def _submit_all(batcher: MicroBatcher, n: int, deadline_s: float = 30):
    await batcher.start()
    try:
        return await asyncio.gather(*(batcher.submit(np.zeros(1), deadline=time.monotonic() + deadline_s)
                                      for _ in range(n)))
    finally:
        await batcher.close()


def test_concurrent_frames_share_one_run():
    batcher = MicroBatcher(run=slow_run(0.05), current=lambda: "m", max_batch=8, max_wait_ms=20, queue_size=16)
    results = asyncio.run(_submit_all(batcher, 8))
    assert max(r.batch_size for r in results) > 1
    assert all(r.model == "m" for r in results)


def test_two_workers_run_two_batches_at_once():
    def timed(workers: int) -> float:
        batcher = MicroBatcher(run=slow_run(0.2), current=lambda: "m", max_batch=1, max_wait_ms=0,
                               queue_size=16, workers=workers)
        started = time.monotonic()
        asyncio.run(_submit_all(batcher, 4))
        return time.monotonic() - started

    one, two = timed(1), timed(2)
    assert one >= 0.75 and two < one * 0.7


def test_a_full_queue_refuses_at_once():
    async def scenario():
        batcher = MicroBatcher(run=slow_run(0.3), current=lambda: "m", max_batch=1, max_wait_ms=0, queue_size=2)
        await batcher.start()
        try:
            def submit():
                return asyncio.create_task(batcher.submit(np.zeros(1), deadline=time.monotonic() + 30))

            running = [submit()]
            await asyncio.sleep(0.05)  # taken by the worker, now running
            running += [submit(), submit()]
            await asyncio.sleep(0.01)  # two queued: full
            with pytest.raises(QueueFull):
                await batcher.submit(np.zeros(1), deadline=time.monotonic() + 30)
            await asyncio.gather(*running)
        finally:
            await batcher.close()

    asyncio.run(scenario())


def test_a_frame_past_its_deadline_is_dropped_not_run():
    async def scenario():
        batcher = MicroBatcher(run=slow_run(0.3), current=lambda: "m", max_batch=1, max_wait_ms=0, queue_size=4)
        await batcher.start()
        try:
            first = asyncio.create_task(batcher.submit(np.zeros(1), deadline=time.monotonic() + 30))
            await asyncio.sleep(0.02)
            with pytest.raises(DeadlineExceeded):
                await batcher.submit(np.zeros(1), deadline=time.monotonic() + 0.1)
            await first
        finally:
            await batcher.close()

    asyncio.run(scenario())


@pytest.mark.parametrize("convert_ahead", [True, False])
@pytest.mark.parametrize("layout", ["raw", "dynamic"])
def test_each_frame_of_a_batch_gets_the_output_it_gets_alone(trained_model, layout, convert_ahead):
    """A static batch-1 model runs a batch frame by frame, converting the next frame while
    the current one runs (or just before it, with one inference worker per core); a
    dynamic-batch model runs it at once. Either way the rows line up."""
    from inspection.data.synth import make_sample
    from inspection.detect.detector import Detector
    from serving.model_manager import LoadedModel
    from serving.pipeline import Frame, run_batch

    detector = Detector(getattr(trained_model, layout), imgsz=trained_model.imgsz)
    loaded = LoadedModel("test", "v1", detector)
    frames = []
    for seed, (width, height) in enumerate([(320, 320), (480, 360), (300, 420), (640, 480), (320, 200)]):
        image = make_sample(seed, width=width, height=height, good=False).image
        frames.append(Frame.prepare(detector, image, (image.shape[1], image.shape[0])))
    batched = run_batch(loaded, list(frames), convert_ahead=convert_ahead)
    assert len(batched) == len(frames)
    for frame, (output, info) in zip(frames, batched, strict=True):
        ((alone, alone_info),) = run_batch(loaded, [frame])
        assert info == alone_info
        np.testing.assert_allclose(output, alone, rtol=1e-4, atol=1e-4)
