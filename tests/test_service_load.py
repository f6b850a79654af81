"""Under load: backpressure, deadlines, micro-batching.

The service harness and its model: tests/service_harness.py."""

from __future__ import annotations

import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor

import pytest

from tests.service_harness import (
    concurrently,
    frame,
)

# -- load: backpressure, deadlines, micro-batching -----------------------------------------


@pytest.fixture
def slow_inference(monkeypatch) -> Callable[[float], None]:
    """slow_inference(seconds): every batch of services started afterwards takes that long."""
    import serving.state

    def slow(seconds: float) -> None:
        real = serving.state.run_batch

        def run(model, frames, **options):
            time.sleep(seconds)
            return real(model, frames, **options)

        monkeypatch.setattr(serving.state, "run_batch", run)

    return slow


def test_a_full_queue_answers_503_with_retry_after_and_stores_nothing_for_it(start, slow_inference):
    slow_inference(0.5)
    service = start(queue_size=1, max_batch=1, max_wait_ms=0)
    station = service.add_station()
    responses = concurrently(6, lambda i: service.inspect(station, frame(seed=90 + i)))
    codes = [r.status_code for r in responses]
    assert 503 in codes and 200 in codes and set(codes) <= {200, 503}
    busy = next(r for r in responses if r.status_code == 503)
    assert busy.headers["retry-after"] == "1"
    assert "Idempotency-Key" in busy.json()["detail"]
    assert len(service.records(station)) == codes.count(200)
    metrics = service.client.get("/metrics", headers=service.admin).text
    assert 'qc_rejected_total{reason="queue_full"}' in metrics


def test_a_frame_still_queued_at_its_deadline_gets_504_and_is_not_stored(start, slow_inference):
    slow_inference(0.5)
    service = start(queue_size=8, max_batch=1, max_wait_ms=0, deadline_ms=200)
    station = service.add_station()
    responses = concurrently(4, lambda i: service.inspect(station, frame(seed=95 + i)))
    codes = [r.status_code for r in responses]
    assert 504 in codes and set(codes) <= {200, 504}
    late = next(r for r in responses if r.status_code == 504)
    assert late.headers["retry-after"] and "deadline" in late.json()["detail"]
    assert len(service.records(station)) == codes.count(200)


def test_concurrent_frames_share_a_batch(start):
    service = start(max_wait_ms=250, max_batch=8)
    station = service.add_station()
    responses = concurrently(8, lambda i: service.inspect(station, frame(seed=100 + i)))
    assert {r.status_code for r in responses} == {200}
    sizes = [r.json()["timings"]["batch_size"] for r in responses]
    assert max(sizes) > 1
    assert len(service.records(station)) == 8


def test_a_slow_database_read_does_not_stall_other_requests(service, monkeypatch):
    station = service.add_station()
    real = service.state.store.admission  # the inspect route's first database read
    read = threading.Event()

    def slow_admission(station_id, key):
        read.set()
        time.sleep(1.0)
        return real(station_id, key)

    monkeypatch.setattr(service.state.store, "admission", slow_admission)
    with ThreadPoolExecutor(1) as pool:
        pending = pool.submit(service.inspect, station)
        assert read.wait(5), "the inspect route did not read its station"
        started = time.monotonic()
        assert service.client.get("/healthz").status_code == 200
        waited = time.monotonic() - started
        assert pending.result().status_code == 200
    assert waited < 0.5, f"/healthz waited {waited:.2f} s behind a database read"


