"""Fairness between stations: one station floods, a quiet one keeps posting.

    .venv/bin/python bench/fairness/run.py --model .cache/test-model-v2/raw/model.onnx [--seconds 20]
    .venv/bin/python bench/fairness/run.py --model ... --code /tmp/before --dry-run   # another checkout

Starts `qc serve` (its own QC_HOME in a temporary folder, default settings but PASS images
sampled at 5%) with two stations, s1 and s2, a key each. First s2 alone posts one frame every
`--period` seconds (open loop) for `--seconds`: its baseline. Then s1 floods from
`--connections` connections (closed loop: each posts again as soon as it is answered,
ignoring Retry-After, as a misbehaving camera or script would) while s2 keeps its pace, from
a process of its own (so its latencies are not those of the flooding client's event loop).
Reported: s2's success rate and p50/p99 latency of its answered frames, alone and under the
flood, and what s1 got (200/429/503). Frames are DeepPCB val JPEGs (640x640) when DeepPCB is
beside the repository, else synthetic 640x640 JPEGs.

`--code DIR` runs the server from another checkout of the project (e.g. `git archive` of the
commit before fair admission), to measure the same scenario before and after.

Writes the `fairness` section of BENCHMARKS.md (unless --dry-run). The client shares the
machine with the service: on 2 cores the flooder's own CPU is part of what s2 competes with.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench.common import DEEPPCB, REPO, model_file, use_repo_home
from bench.report import table, write_section
from serving.launch import ServerDidNotStart, free_port, wait_ready


def percentile(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def frames() -> list[bytes]:
    found = sorted((DEEPPCB / "images" / "val").glob("*.jpg"))[:50]
    if found:
        return [p.read_bytes() for p in found]
    import cv2
    import numpy as np

    rng = np.random.default_rng(0)
    return [cv2.imencode(".jpg", cv2.GaussianBlur(rng.integers(0, 255, (640, 640, 3), np.uint8), (0, 0), 2))[1]
            .tobytes() for _ in range(20)]


async def quiet_station(client, key: str, images: list[bytes], *, period: float, seconds: float):
    """s2: one frame every `period` s, whatever happened to the last; (latencies ms, codes)."""
    latencies: list[float] = []
    codes: Counter = Counter()

    async def one(n: int) -> None:
        started = time.perf_counter()
        try:
            response = await client.post("/v1/stations/s2/inspect", content=images[n % len(images)],
                                         headers={"Authorization": f"Bearer {key}", "Content-Type": "image/jpeg",
                                                  "Idempotency-Key": f"s2-{time.time_ns()}-{n}"})
            codes[response.status_code] += 1
            if response.status_code == 200:
                latencies.append((time.perf_counter() - started) * 1000)
        except Exception as error:  # noqa: BLE001 - a timeout or a refused connection counts as a failure
            codes[type(error).__name__] += 1

    tasks, start, n = [], time.perf_counter(), 0
    while time.perf_counter() - start < seconds:
        tasks.append(asyncio.create_task(one(n)))
        n += 1
        await asyncio.sleep(max(0.0, start + n * period - time.perf_counter()))
    await asyncio.gather(*tasks)
    return latencies, codes


async def flood(client, key: str, images: list[bytes], *, connections: int, until: float) -> Counter:
    codes: Counter = Counter()

    async def connection(worker: int) -> None:
        n = 0
        while time.perf_counter() < until:
            n += 1
            try:
                response = await client.post(
                    "/v1/stations/s1/inspect", content=images[(worker + n) % len(images)],
                    headers={"Authorization": f"Bearer {key}", "Content-Type": "image/jpeg"})
                codes[response.status_code] += 1
            except Exception as error:  # noqa: BLE001 - counted as a failure, as above
                codes[type(error).__name__] += 1

    await asyncio.gather(*(connection(i) for i in range(connections)))
    return codes


def quiet_process(url: str, key: str, period: float, seconds: float):
    """s2 in a process of its own: its latencies are the service's, not those of a client
    event loop busy with 200 flooding connections."""
    import httpx

    async def run():
        async with httpx.AsyncClient(base_url=url, timeout=60) as client:
            return await quiet_station(client, key, frames(), period=period, seconds=seconds)

    return asyncio.run(run())


async def flood_for(url: str, key: str, images: list[bytes], *, connections: int, seconds: float) -> Counter:
    import httpx

    limits = httpx.Limits(max_connections=connections, max_keepalive_connections=connections)
    async with httpx.AsyncClient(base_url=url, timeout=60, limits=limits) as client:
        return await flood(client, key, images, connections=connections, until=time.perf_counter() + seconds)


def scenario(url: str, keys: dict[str, str], images: list[bytes], args) -> dict:
    from concurrent.futures import ProcessPoolExecutor

    with ProcessPoolExecutor(1) as quiet:
        quiet.submit(quiet_process, url, keys["s2"], 0.2, 2).result()  # warm-up
        alone = quiet.submit(quiet_process, url, keys["s2"], args.period, args.seconds).result()
        under = quiet.submit(quiet_process, url, keys["s2"], args.period, args.seconds + 2)
        flooder = asyncio.run(flood_for(url, keys["s1"], images, connections=args.connections,
                                        seconds=args.seconds + 2))
        under_flood = under.result()
    return {"alone": alone, "under_flood": under_flood, "flooder": flooder}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="ONNX file, or a registry name")
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--period", type=float, default=0.5, help="s2 posts a frame every this many s")
    parser.add_argument("--connections", type=int, default=200, help="s1's flooding connections")
    parser.add_argument("--code", type=Path, default=REPO, help="checkout the server runs from")
    parser.add_argument("--label", default="", help="what --code is, for the report")
    parser.add_argument("--dry-run", action="store_true", help="print, do not write BENCHMARKS.md")
    args = parser.parse_args()
    model, images = model_file(args.model), frames()

    home = Path(tempfile.mkdtemp(prefix="qc-bench-fairness-"))
    env = {**os.environ, "QC_HOME": str(home), "QC_PASS_SAMPLE_RATE": "0.05", "QC_LOG_JSON": "true",
           "PYTHONPATH": str(args.code.resolve())}
    qc = [sys.executable, "-m", "qc"]

    def run(*a: str) -> str:
        return subprocess.run([*qc, *a], env=env, check=True, capture_output=True, text=True, cwd=args.code).stdout

    run("models", "add", str(model.resolve()), "--name", "default", "--promote")
    keys = {}
    for station in ("s1", "s2"):
        run("stations", "add", station)
        keys[station] = run("keys", "create", "--role", "station", "--station", station).strip()
    port, log = free_port(), home.with_suffix(".log")
    with log.open("wb") as out:
        server = subprocess.Popen([*qc, "serve", "--port", str(port)], env=env, cwd=args.code,
                                  stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        try:
            wait_ready(url, server, timeout=120, log_path=log)
        except ServerDidNotStart as error:
            sys.exit(f"error: {error}")
        result = scenario(url, keys, images, args)
    finally:
        server.terminate()
        server.wait(timeout=60)
        shutil.rmtree(home, ignore_errors=True)

    rows = []
    for phase, (latencies, codes) in (("s2 alone", result["alone"]), ("s2 while s1 floods", result["under_flood"])):
        sent = sum(codes.values())
        rows.append([phase, sent, f"{codes.get(200, 0) / max(1, sent):.0%}",
                     f"{percentile(latencies, 50):.0f}", f"{percentile(latencies, 99):.0f}",
                     ", ".join(f"{k}: {v}" for k, v in sorted(codes.items(), key=str) if k != 200) or "-"])
    flooder = result["flooder"]
    label = args.label or ("this checkout" if args.code.resolve() == REPO else str(args.code))
    body = "\n".join([
        "## Fairness: one station floods, another keeps posting (bench/fairness/run.py)",
        "",
        (f"Server: {label}, default settings (QC_QUEUE_SIZE 64, max_batch 8, 1 inference worker), "
         f"model `{model}`, SQLite; s2 in a process of its own. s2 posts one frame every {args.period:g} s "
         f"for {args.seconds:.0f} s, alone and then while s1 floods from {args.connections} connections "
         "(closed loop, ignoring Retry-After). Client and service share the machine."),
        "",
        table(["phase", "s2 frames", "s2 answered 200", "s2 p50 ms", "s2 p99 ms", "s2 other answers"], rows),
        "",
        f"s1 (the flooder) got: {', '.join(f'{k}: {v}' for k, v in sorted(flooder.items(), key=str))}.",
    ])
    print(body)
    if not args.dry_run:
        write_section("fairness" + (f"-{args.label}" if args.label else ""), body)


if __name__ == "__main__":
    use_repo_home()
    main()
