"""Service throughput and latency under concurrent stations, beside bare ONNX Runtime.

    .venv/bin/python bench/serving/run.py --model deeppcb [--seconds 20]

`--model` is an ONNX file or a registry name in $QC_HOME (default: the repository's .qc, as
for the other benchmarks). Starts `qc serve` (its own QC_HOME in a temporary folder, the model
registered and promoted, one station, one key; its output in a log beside that folder, whose
tail is shown if it does not start), then posts DeepPCB val JPEGs from a lean keep-alive
client (bench/serving/client.py) with 1, 4, 16 and 64 concurrent stations (closed loop: each
posts its next frame when answered), for `--seconds` each. Then an open-loop run at 70% of the
best throughput, to see the tail when the service is busy but not saturated.

The bare `session.run` throughput for the same model and input size is measured in this
process with the service idle, in rounds beside the service at its saturating level: each
round runs bare `session.run` as ORT runs it by default (one call at a time, its own threads),
then, if the service runs another plan (`--workers`, `--threads`, `--processes`), that plan
bare, then the service; the ratios are the medians of the rounds' ratios. Both bare plans are
measured again at the end, the service stopped. The service's peak memory is read from /proc
(VmHWM), and its memory maps are checked for libtorch. The CPU the service's processes spent
(utime + stime from /proc, children included) is divided by the frames answered at each level,
thread by thread; all but the inference thread and ONNX Runtime's own threads is the CPU-ms per
frame outside inference. The answers' own `timings` give each stage's wall time, and with
`--profile-seconds` py-spy samples the service at the saturating level and sorts its CPU into
stages (bench/serving/stages.py).
Writes the `serving-<imgsz>-p<processes>-w<workers>-t<threads>[-<tag>]` section of BENCHMARKS.md.

The client runs on the same machine as the service and takes CPU from it; on 2 cores this
understates the service. Numbers are from one run.
"""

from __future__ import annotations

import argparse
import asyncio
import itertools
import json
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
from bench.serving.client import Connections
from bench.serving.stages import (
    INFERENCE,
    read_raw,
    stage_shares,
    start_profile,
    thread_kind,
    thread_names,
)
from serving.launch import ServerDidNotStart, free_port, wait_ready


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q / 100 * (len(ordered) - 1)))]


def median(values: list[float]) -> float:
    return percentile(values, 50) if values else float("nan")


def process_tree(pid: int) -> list[int]:
    """`pid` and every process below it (the `--workers` processes of `qc serve`)."""
    children: dict[int, list[int]] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        children.setdefault(int(fields[1]), []).append(int(stat.parent.name))
    tree, todo = [], [pid]
    while todo:
        current = todo.pop()
        tree.append(current)
        todo += children.get(current, [])
    return tree


def thread_cpu(pids: list[int]) -> dict[tuple[int, int], float]:
    """(pid, native thread id) -> user + system CPU seconds of each thread of the processes."""
    tick = os.sysconf("SC_CLK_TCK")
    seen = {}
    for pid in pids:
        for stat in Path(f"/proc/{pid}/task").glob("*/stat"):
            try:
                fields = stat.read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue  # ended meanwhile
            seen[(pid, int(stat.parent.name))] = (int(fields[11]) + int(fields[12])) / tick
    return seen


def cpu_seconds(pids: list[int]) -> float:
    """User + system CPU time of the processes, as /proc counts it."""
    tick = os.sysconf("SC_CLK_TCK")
    total = 0.0
    for pid in pids:
        try:
            fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue  # gone
        total += (int(fields[11]) + int(fields[12])) / tick
    return total


@dataclass
class Bare:
    frames_per_s: float
    cpu_ms: float  # CPU time of this process per session.run frame (ORT's threads included)


class BareSession:
    """session.run alone on the frames' own tensors (made beforehand; random tensors run 20-30%
    slower than real frames on this model), as many calls at a time as `measure` is told."""

    def __init__(self, model: Path, frames: list[bytes], *, threads: int) -> None:
        from inspection.detect.detector import Detector
        from inspection.detect.preprocess import to_tensor

        self.detector = Detector(model, threads=threads)
        self.tensors = [to_tensor([self.detector.prepare(self.detector.load_bytes(d)[0])[0]]) for d in frames]

    def measure(self, seconds: float, *, concurrent: int) -> Bare:
        import threading

        counts = [0] * concurrent
        end = time.perf_counter() + seconds
        tensors, run = self.tensors, self.detector.backend.run

        def loop(worker: int) -> None:
            while time.perf_counter() < end:
                run(tensors[(counts[worker] * concurrent + worker) % len(tensors)])
                counts[worker] += 1

        threads_ = [threading.Thread(target=loop, args=(i,)) for i in range(concurrent)]
        start, cpu = time.perf_counter(), time.process_time()
        for thread in threads_:
            thread.start()
        for thread in threads_:
            thread.join()
        runs = sum(counts)
        return Bare(runs / (time.perf_counter() - start), (time.process_time() - cpu) * 1000 / max(runs, 1))


@dataclass
class Tally:
    """Latencies of the frames answered 200, and a count of the others."""

    latencies: list[float] = field(default_factory=list)
    timings: list[dict[str, float]] = field(default_factory=list)  # the answers' own stage timings
    errors: int = 0

    async def post(self, client: Connections, key: str, frame: bytes, idempotency_key: str) -> None:
        """Post one frame to the bench station and time it."""
        started = time.perf_counter()
        status, body = await client.post(
            "/v1/stations/bench/inspect", frame,
            {"Authorization": f"Bearer {key}", "Content-Type": "image/jpeg", "Idempotency-Key": idempotency_key})
        if status == 200:
            self.latencies.append((time.perf_counter() - started) * 1000)
            self.timings.append(json.loads(body)["timings"])
        else:
            self.errors += 1


@dataclass
class Level:
    stations: int
    tally: Tally
    frames_per_s: float
    client_cpu: float  # share of all cores the load generator took
    service_cpu_ms: float  # CPU-ms of the service's processes per answered frame
    thread_cpu_ms: dict[tuple[int, int], float] = field(default_factory=dict)  # per (pid, tid), per frame


async def closed_loop(url: str, key: str, frames: list[bytes], *, concurrency: int, seconds: float,
                      server_pid: int | None = None) -> Level:
    tally = Tally()
    counter = itertools.count()
    run = time.monotonic_ns()  # every call's keys are new: a repeated key is answered from its record
    deadline = time.perf_counter() + seconds
    async with Connections(url) as client:  # one connection per station: each waits for its answer
        async def station(worker: int) -> None:
            while time.perf_counter() < deadline:
                n = next(counter)
                await tally.post(client, key, frames[n % len(frames)], f"c{concurrency}-{run}-{n}")

        pids = process_tree(server_pid) if server_pid else []
        began, cpu, served, threads = time.perf_counter(), time.process_time(), cpu_seconds(pids), thread_cpu(pids)
        await asyncio.gather(*(station(i) for i in range(concurrency)))
        elapsed = time.perf_counter() - began
        served = cpu_seconds(pids) - served
        threads_after = thread_cpu(pids)
        client_cpu = (time.process_time() - cpu) / elapsed / (os.cpu_count() or 1)
    answered = max(len(tally.latencies), 1)
    per_thread = {t: (after - threads.get(t, 0.0)) * 1000 / answered for t, after in threads_after.items()}
    return Level(concurrency, tally, answered / elapsed, client_cpu, served * 1000 / answered, per_thread)


async def open_loop(url: str, key: str, frames: list[bytes], *, rate: float, seconds: float):
    tally = Tally()
    async with Connections(url) as client:
        tasks, start, n = [], time.perf_counter(), 0
        while time.perf_counter() - start < seconds:
            tasks.append(asyncio.create_task(tally.post(client, key, frames[n % len(frames)], f"open-{start}-{n}")))
            n += 1
            await asyncio.sleep(max(0.0, start + n / rate - time.perf_counter()))
        await asyncio.gather(*tasks)
    return tally.latencies, tally.errors


def rss_mb(pid: int, field: str = "VmHWM") -> float:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith(field):
            return int(line.split()[1]) / 1024
    return float("nan")


STAGE_TIMINGS = ("decode_ms", "queue_ms", "inference_ms", "postprocess_ms", "store_ms", "total_ms", "batch_size",
                 "group_size")


def stage_rows(levels: list[Level]) -> list[list]:
    """Median of each timing the answers carry, per level (a timing an older service lacks is '-')."""
    rows = []
    for name in STAGE_TIMINGS:
        values = [[t[name] for t in level.tally.timings if name in t] for level in levels]
        if any(values):
            rows.append([name, *(f"{median(v):.1f}" if v else "-" for v in values)])
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", required=True, help="ONNX file, or a registry name (its production version)")
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--levels", default="1,4,16,64")
    parser.add_argument("--max-batch", type=int, default=8)
    parser.add_argument("--max-wait-ms", type=float, default=3)
    parser.add_argument("--workers", type=int, default=1, help="QC_INFERENCE_WORKERS of the service")
    parser.add_argument("--threads", type=int, default=0, help="QC_THREADS (0: ORT decides)")
    parser.add_argument("--processes", type=int, default=1, help="qc serve --workers: service processes")
    parser.add_argument("--profile-seconds", type=float, default=15,
                        help="py-spy the service this long at the saturating level (0: no profile)")
    parser.add_argument("--rounds", type=int, default=3, help="side-by-side rounds of bare and service")
    parser.add_argument("--round-seconds", type=float, default=8)
    parser.add_argument("--tag", default="", help="appended to the section name, e.g. before")
    parser.add_argument("--dry-run", action="store_true", help="print, do not write BENCHMARKS.md")
    args = parser.parse_args()
    if not DEEPPCB.is_dir():
        sys.exit(f"DeepPCB not found at {DEEPPCB}")
    model = model_file(args.model)
    frames = [p.read_bytes() for p in sorted((DEEPPCB / "images" / "val").glob("*.jpg"))[:100]]
    import onnxruntime

    input_hw = onnxruntime.InferenceSession(str(model), providers=["CPUExecutionProvider"]).get_inputs()[0].shape[2:]

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
    serve = [*qc, "serve", "--port", str(port)]
    if args.processes > 1:
        serve += ["--workers", str(args.processes)]
    with log.open("wb") as out:
        server = subprocess.Popen(serve, env=env, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    shares: dict[str, float] = {}
    load_before = os.getloadavg()[0]
    try:
        try:
            wait_ready(url, server, timeout=90, log_path=log)
        except ServerDidNotStart as error:
            sys.exit(f"error: {error}")
        asyncio.run(closed_loop(url, key, frames, concurrency=2, seconds=3))  # warm-up
        levels = [asyncio.run(closed_loop(url, key, frames, concurrency=int(x), seconds=args.seconds,
                                          server_pid=server.pid))
                  for x in args.levels.split(",")]
        best = max(levels, key=lambda level: level.frames_per_s)
        if args.profile_seconds:
            raw = home.with_suffix(".py-spy.txt")
            spy = start_profile(server.pid, args.profile_seconds, raw, subprocesses=args.processes > 1)
            profiled = asyncio.run(closed_loop(url, key, frames, concurrency=best.stations,
                                               seconds=args.profile_seconds + 2, server_pid=server.pid))
            _, problem = spy.communicate(timeout=60)
            if raw.is_file():
                shares = stage_shares(read_raw(raw))
                profile_cpu_ms = profiled.service_cpu_ms
            else:
                print(f"py-spy wrote nothing: {problem.decode(errors='replace')[-500:]}", file=sys.stderr)
        # Side by side: this VM's speed drifts by up to 1.5x over minutes (BENCHMARKS.md, issue
        # 16), so the ratio is taken round by round, bare session.run (the service idle) then
        # the service at its saturating level, each round's figures a few seconds apart.
        plan = args.workers * args.processes
        same_plan = plan == 1 and args.threads == 0  # the service runs as ORT does by default
        bare_default = BareSession(model, frames, threads=0)
        bare_plan = bare_default if same_plan else BareSession(model, frames, threads=args.threads)
        rounds: list[tuple[Bare, Bare, Level]] = []  # (default plan, faster plan, service)
        for _ in range(args.rounds):
            by_default = bare_default.measure(args.round_seconds, concurrent=1)
            own = by_default if same_plan else bare_plan.measure(args.round_seconds, concurrent=plan)
            faster = max(by_default, own, key=lambda b: b.frames_per_s)
            rounds.append((by_default, faster, asyncio.run(closed_loop(
                url, key, frames, concurrency=best.stations, seconds=args.round_seconds, server_pid=server.pid))))
        rate = 0.7 * best.frames_per_s
        open_lat, open_err = asyncio.run(open_loop(url, key, frames, rate=rate, seconds=args.seconds))
        p50, p99 = percentile(open_lat, 50), percentile(open_lat, 99)
        load_after = os.getloadavg()[0]
        tree = process_tree(server.pid)
        names = {(pid, tid): name for pid in tree for tid, name in thread_names(pid).items()}
        peak = sum(rss_mb(pid) for pid in tree)
        torch_loaded = any("libtorch" in Path(f"/proc/{pid}/maps").read_text() for pid in tree)
    finally:
        server.terminate()
        server.wait(timeout=60)
        shutil.rmtree(home, ignore_errors=True)
    workers, threads, processes = args.workers, args.threads, args.processes
    bare_default = bare_default.measure(10, concurrent=1)
    bare_plan = bare_default if same_plan else bare_plan.measure(10, concurrent=workers * processes)
    bare = max(bare_default, bare_plan, key=lambda b: b.frames_per_s)
    ratios_default = [level.frames_per_s / b.frames_per_s for b, _, level in rounds]
    ratios_faster = [level.frames_per_s / b.frames_per_s for _, b, level in rounds]
    by_kind: dict[str, float] = {}
    for thread, ms in best.thread_cpu_ms.items():
        kind = thread_kind(names.get(thread))
        by_kind[kind] = by_kind.get(kind, 0.0) + ms
    inference_ms = sum(ms for kind, ms in by_kind.items() if kind in INFERENCE)
    outside = sum(by_kind.values()) - inference_ms
    subtracted = best.service_cpu_ms - bare.cpu_ms
    size = "x".join(map(str, input_hw))
    body = [
        f"## Service at {size}: {processes} process(es), {workers} inference worker(s) each (bench/serving/run.py)",
        "",
        (f"Model `{model}` ({size} input), DeepPCB val JPEGs (640x640), `qc serve"
         f"{f' --workers {processes}' if processes > 1 else ''}` with max_batch {args.max_batch}, "
         f"{workers} inference worker(s) of {threads or 'the default'} ORT thread(s) per process, "
         f"max_wait {args.max_wait_ms} ms, PASS images sampled at 5%, SQLite WAL (synchronous=FULL). "
         f"Closed loop, {args.seconds:.0f} s per level; client and service share the machine, "
         f"whose 1-minute load average was {load_before:.1f} at the start and {load_after:.1f} at the end "
         f"(other work included: above {os.cpu_count()} the figures are squeezed)."),
        "",
        table(["stations", "frames/s", "p50 ms", "p95 ms", "p99 ms", "errors", "service CPU-ms per frame"],
              [[level.stations, f"{level.frames_per_s:.1f}", f"{percentile(level.tally.latencies, 50):.1f}",
                f"{percentile(level.tally.latencies, 95):.1f}", f"{percentile(level.tally.latencies, 99):.1f}",
                level.tally.errors, f"{level.service_cpu_ms:.1f}"] for level in levels]),
        "",
        ("Stage wall times the answers report (median ms; `queue_ms` is the wait for a batch, "
        "`store_ms` the image and record writes with their fsyncs):"),
        "",
        table(["timing", *(f"{level.stations} station(s)" for level in levels)], stage_rows(levels)),
        "",
    ]
    body += [
        (f"CPU by thread at {best.stations} stations, the saturating level (utime + stime of each thread "
        "over the level, per answered frame; threads named by py-spy dump):"),
        "",
        table(["thread", "CPU-ms per frame"],
              [[kind, f"{ms:.2f}"] for kind, ms in sorted(by_kind.items(), key=lambda kv: -kv[1])]
              + [["**outside inference** (all but the inference thread and ONNX Runtime's)", f"**{outside:.2f}**"]]),
        "",
    ]
    if shares:
        body += [
            (f"CPU by stage at {best.stations} stations (py-spy, {args.profile_seconds:.0f} s, threads on the CPU "
            f"only; CPU-ms = share x the {profile_cpu_ms:.1f} CPU-ms the service spent per frame then):"),
            "",
            table(["stage", "share of service CPU", "CPU-ms per frame"],
                  [[stage, f"{share:.1%}", f"{share * profile_cpu_ms:.2f}"] for stage, share in shares.items()]),
            "",
        ]
    body += [
        table(["figure", "value", "goal"], [
            ["bare session.run, one at a time, ORT's default threads",
             f"{bare_default.frames_per_s:.1f} frames/s, {bare_default.cpu_ms:.1f} CPU-ms per frame", ""],
            [(f"bare session.run, {workers * processes} at a time, {threads or 'default'} thread(s) each "
             "(as the service runs)"),
             f"{bare_plan.frames_per_s:.1f} frames/s, {bare_plan.cpu_ms:.1f} CPU-ms per frame", ""],
            ["saturated service / the faster bare figure, both measured after the service stopped",
             (f"{best.frames_per_s / bare.frames_per_s:.2f} ({best.frames_per_s:.1f} frames/s at {best.stations} "
             "stations)"), ""],
            [(f"side by side: saturated service / bare session.run as ORT runs it by default (one call at a "
              f"time, its own threads); median of {len(rounds)} rounds of {args.round_seconds:.0f} s bare then "
              f"{args.round_seconds:.0f} s of service at {best.stations} stations"),
             (f"**{median(ratios_default):.2f}** (rounds: " + ", ".join(
                 f"{level.frames_per_s:.1f}/{b.frames_per_s:.1f}" for b, _, level in rounds) + " frames/s)"),
             ">= 0.9"],
            [("the same rounds against the faster of that and the service's own plan "
              f"({plan} call(s) at a time, {threads or 'default'} thread(s) each)"),
             (f"{median(ratios_faster):.2f} (rounds: " + ", ".join(
                 f"{level.frames_per_s:.1f}/{b.frames_per_s:.1f}" for _, b, level in rounds) + " frames/s)"),
             ""],
            ["service CPU-ms per frame outside inference (by thread, above)", f"{outside:.1f}", "<= 3"],
            ["the same by subtraction: service CPU per frame at saturation minus the faster bare run's",
             f"{subtracted:.1f}", ""],
            ["CPU taken by the load generator at that level (share of all cores)", f"{best.client_cpu:.0%}", ""],
            [f"open loop at 70% of saturation ({rate:.1f} frames/s): p50 / p99",
             f"{p50:.1f} / {p99:.1f} ms (p99/p50 {p99 / p50:.2f}, errors {open_err})", "p99 <= 2x p50"],
            ["service peak memory (VmHWM, all processes)", f"{peak:.0f} MB", "<= 600 MB per process"],
            ["libtorch mapped in the service", "yes" if torch_loaded else "no", "no"],
            [("projection, 16-core GPU host: CPU-bound frames/s if 16 cores each spent the CPU-ms outside "
             "inference measured here per frame (no GPU measured: none was lent)"),
             f"{16_000 / outside:.0f} frames/s" if outside > 0 else "-", ""],
        ]),
    ]
    text = "\n".join(body)
    print(text)
    if not args.dry_run:
        write_section(f"serving-{size}-p{processes}-w{workers}-t{threads}" + (f"-{args.tag}" if args.tag else ""),
                      text)


if __name__ == "__main__":
    use_repo_home()
    main()
