"""Service throughput and latency under concurrent stations, beside bare ONNX Runtime.

    .venv/bin/python bench/serving/run.py --model deeppcb [--seconds 20]

`--model` is an ONNX file or a registry name in $QC_HOME (default: the repository's .qc, as
for the other benchmarks). Starts `qc serve` (its own QC_HOME in a temporary folder, the model
registered and promoted, one station, one key; its output in a log beside that folder, whose
tail is shown if it does not start), then posts DeepPCB val JPEGs from an async httpx client
with 1, 4, 16 and 64 concurrent stations (closed loop: each posts its next frame when
answered), for `--seconds` each. Then an open-loop run at 70% of the best throughput, to see the tail when
the service is busy but not saturated. The bare `session.run` throughput for the same model
and input size is measured in this process with the service idle. The service's peak memory
is read from /proc (VmHWM), and its memory maps are checked for libtorch.
Writes the `serving-w<workers>-t<threads>` section of BENCHMARKS.md.

The client runs on the same machine as the service and takes CPU from it; on 2 cores this
understates the service. Numbers are from one run.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench.common import DEEPPCB, model_file, use_repo_home
from bench.report import table, write_section
from serving.launch import ServerDidNotStart, free_port, wait_ready


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def bare_throughput(model: Path, frames: list[bytes], seconds: float, *, threads: int, concurrent: int) -> float:
    """session.run alone on the frames' own tensors (made beforehand; random tensors run
    20-30% slower than real frames on this model), `concurrent` calls at a time."""
    import threading

    from inspection.detect.detector import Detector
    from inspection.detect.preprocess import to_tensor

    detector = Detector(model, threads=threads)
    tensors = [to_tensor([detector.prepare(detector.load_bytes(d)[0])[0]]) for d in frames]
    counts = [0] * concurrent
    end = time.perf_counter() + seconds

    def loop(worker: int) -> None:
        while time.perf_counter() < end:
            tensor = tensors[(counts[worker] * concurrent + worker) % len(tensors)]
            detector.session.run(None, {detector.input_name: tensor})
            counts[worker] += 1

    threads_ = [threading.Thread(target=loop, args=(i,)) for i in range(concurrent)]
    start = time.perf_counter()
    for thread in threads_:
        thread.start()
    for thread in threads_:
        thread.join()
    return sum(counts) / (time.perf_counter() - start)


@dataclass
class Tally:
    """Latencies of the frames answered 200, and a count of the others."""

    latencies: list[float] = field(default_factory=list)
    errors: int = 0

    async def post(self, client, key: str, frame: bytes, idempotency_key: str) -> None:
        """Post one frame to the bench station and time it."""
        started = time.perf_counter()
        response = await client.post(
            "/v1/stations/bench/inspect", content=frame,
            headers={"Authorization": f"Bearer {key}", "Content-Type": "image/jpeg",
                     "Idempotency-Key": idempotency_key})
        if response.status_code == 200:
            self.latencies.append((time.perf_counter() - started) * 1000)
        else:
            self.errors += 1


async def closed_loop(url: str, key: str, frames: list[bytes], *, concurrency: int, seconds: float):
    import httpx

    tally = Tally()
    counter = itertools.count()
    deadline = time.perf_counter() + seconds
    limits = httpx.Limits(max_connections=concurrency, max_keepalive_connections=concurrency)
    async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as client:
        async def station(worker: int) -> None:
            while time.perf_counter() < deadline:
                n = next(counter)
                await tally.post(client, key, frames[n % len(frames)], f"c{concurrency}-{n}")

        began, cpu = time.perf_counter(), time.process_time()
        await asyncio.gather(*(station(i) for i in range(concurrency)))
        elapsed = time.perf_counter() - began
        client_cpu = (time.process_time() - cpu) / elapsed / (os.cpu_count() or 1)
    return tally.latencies, tally.errors, len(tally.latencies) / elapsed, client_cpu


async def open_loop(url: str, key: str, frames: list[bytes], *, rate: float, seconds: float):
    import httpx

    tally = Tally()
    async with httpx.AsyncClient(base_url=url, timeout=60, limits=httpx.Limits(max_connections=256)) as client:
        tasks, start, n = [], time.perf_counter(), 0
        while time.perf_counter() - start < seconds:
            tasks.append(asyncio.create_task(tally.post(client, key, frames[n % len(frames)], f"open-{n}")))
            n += 1
            await asyncio.sleep(max(0.0, start + n / rate - time.perf_counter()))
        await asyncio.gather(*tasks)
    return tally.latencies, tally.errors


def rss_mb(pid: int, field: str = "VmHWM") -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field):
            return int(line.split()[1]) / 1024
    return float("nan")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="ONNX file, or a registry name (its production version)")
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--levels", default="1,4,16,64")
    parser.add_argument("--max-batch", type=int, default=8)
    parser.add_argument("--max-wait-ms", type=float, default=3)
    parser.add_argument("--workers", type=int, default=1, help="QC_INFERENCE_WORKERS of the service")
    parser.add_argument("--threads", type=int, default=0, help="QC_THREADS (0: ORT decides)")
    parser.add_argument("--dry-run", action="store_true", help="print, do not write BENCHMARKS.md")
    args = parser.parse_args()
    if not DEEPPCB.is_dir():
        sys.exit(f"DeepPCB not found at {DEEPPCB}")
    model = model_file(args.model)
    frames = [p.read_bytes() for p in sorted((DEEPPCB / "images" / "val").glob("*.jpg"))[:100]]

    home = Path(tempfile.mkdtemp(prefix="qc-bench-serving-"))
    env = {**os.environ, "QC_HOME": str(home), "QC_PASS_SAMPLE_RATE": "0.05", "QC_LOG_JSON": "true",
           "QC_MAX_BATCH": str(args.max_batch), "QC_MAX_WAIT_MS": str(args.max_wait_ms),
           "QC_QUEUE_SIZE": "256", "QC_INFERENCE_WORKERS": str(args.workers), "QC_THREADS": str(args.threads)}
    qc = [sys.executable, "-m", "qc"]

    def run(*a: str) -> str:
        return subprocess.run([*qc, *a], env=env, check=True, capture_output=True, text=True).stdout

    run("models", "add", str(model), "--name", "default", "--promote")
    run("stations", "add", "bench", "--description", "benchmark")
    key = run("keys", "create", "--role", "station", "--station", "bench").strip()
    port = free_port()
    log = home.with_suffix(".log")  # the service's output, kept after its QC_HOME is removed
    with log.open("wb") as out:
        server = subprocess.Popen([*qc, "serve", "--port", str(port)], env=env,
                                  stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        try:
            wait_ready(url, server, timeout=90, log_path=log)
        except ServerDidNotStart as error:
            sys.exit(f"error: {error}")
        asyncio.run(closed_loop(url, key, frames, concurrency=2, seconds=3))  # warm-up
        rows, best, best_client = [], 0.0, 0.0
        for level in (int(x) for x in args.levels.split(",")):
            latencies, errors, throughput, client_cpu = asyncio.run(
                closed_loop(url, key, frames, concurrency=level, seconds=args.seconds))
            if throughput > best:
                best, best_client = throughput, client_cpu
            rows.append([level, f"{throughput:.1f}", f"{percentile(latencies, 50):.1f}",
                         f"{percentile(latencies, 95):.1f}", f"{percentile(latencies, 99):.1f}", errors])
        rate = 0.7 * best
        open_lat, open_err = asyncio.run(open_loop(url, key, frames, rate=rate, seconds=args.seconds))
        p50, p99 = percentile(open_lat, 50), percentile(open_lat, 99)
        peak = rss_mb(server.pid)
        maps = Path(f"/proc/{server.pid}/maps").read_text()
        torch_loaded = "libtorch" in maps
    finally:
        server.terminate()
        server.wait(timeout=60)
        shutil.rmtree(home, ignore_errors=True)
    workers, threads = args.workers, args.threads
    bare_default = bare_throughput(model, frames, seconds=10, threads=0, concurrent=1)
    bare_plan = bare_throughput(model, frames, seconds=10, threads=threads, concurrent=workers)
    bare = max(bare_default, bare_plan)
    body = "\n".join([
        f"## Service: concurrent stations, {workers} inference worker(s) (bench/serving/run.py)",
        "",
        (f"Model `{model.name}`, DeepPCB val JPEGs (640x640), `qc serve` with max_batch {args.max_batch}, "
        f"{workers} inference worker(s) of {threads or 'the default'} ORT thread(s), "
        f"max_wait {args.max_wait_ms} ms, PASS images sampled at 5%, SQLite WAL (synchronous=FULL). "
        f"Closed loop, {args.seconds:.0f} s per level; client and service share the machine."),
        "",
        table(["stations", "frames/s", "p50 ms", "p95 ms", "p99 ms", "errors"], rows),
        "",
        table(["figure", "value", "goal"], [
            ["bare session.run, one at a time, ORT's default threads", f"{bare_default:.1f} frames/s", ""],
            [f"bare session.run, {workers} at a time, {threads or 'default'} thread(s) each (as the service runs)",
             f"{bare_plan:.1f} frames/s", ""],
            ["saturated service / the faster bare figure", f"{best / bare:.2f}", ">= 0.9"],
            ["CPU taken by the load generator at that level (share of all cores)", f"{best_client:.0%}", ""],
            [f"open loop at 70% of saturation ({rate:.1f} frames/s): p50 / p99",
             f"{p50:.1f} / {p99:.1f} ms (p99/p50 {p99 / p50:.2f}, errors {open_err})", "p99 <= 2x p50"],
            ["service peak memory (VmHWM)", f"{peak:.0f} MB", "<= 600 MB"],
            ["libtorch mapped in the service", "yes" if torch_loaded else "no", "no"],
        ]),
    ])
    print(body)
    if not args.dry_run:
        write_section(f"serving-w{workers}-t{threads}", body)


if __name__ == "__main__":
    use_repo_home()
    main()
