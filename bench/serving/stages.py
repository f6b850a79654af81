"""Where a served frame's CPU goes: per-thread CPU time of `qc serve`, and py-spy's sampled
stacks sorted into stages.

Per-thread CPU (utime + stime of /proc/PID/task/TID, named with `py-spy dump`) is exact even
on a crowded machine. Sampled stacks say what a thread does, but a thread that is runnable and
waiting for a core counts as busy, so on a machine with more runnable threads than cores the
waiting (executor queues, the event loop's wake-ups) is overstated.

    thread_kind(thread_names(pid).get(tid))   # "commit thread: boxes, rules, image and record writes ..."
    spy = start_profile(pid, 15, Path("/tmp/serve.txt"), subprocesses=False)   # py-spy record
    spy.wait()
    shares = stage_shares(read_raw(Path("/tmp/serve.txt")))   # {"decode": 0.21, ...}

py-spy samples the Python threads that are not idle (waiting on a lock, a socket or a queue),
so a stage's share of the samples is roughly its share of the Python threads' CPU time;
multiplied by the CPU-ms the process spent per answered frame, that gives CPU-ms per frame per
stage. ONNX Runtime's own threads are not Python threads and are not sampled.

A stack belongs to the first stage whose pattern matches, looking from the innermost frame
outwards: `decode (inspection/detect/detector.py)` under `_judge` is post-processing,
`imdecode` under `Frame.decode` is decoding.
"""

from __future__ import annotations

import re
import shutil
import subprocess
import sys
from collections import Counter
from pathlib import Path

# (stage, substrings of a py-spy frame "function (path:line)"); checked innermost frame first.
STAGES: list[tuple[str, tuple[str, ...]]] = [
    ("inference (session.run)", ("onnxruntime_inference_collection.py", "inspection/detect/backend.py",
                                 "run_tensor (inspection")),
    ("tensor (letterboxed uint8 to NCHW float)", ("to_tensor (", "_tensor (serving/pipeline.py")),
    ("letterbox", ("letterbox (", "prepare (inspection/detect/detector.py", "prepare (serving/pipeline.py")),
    ("header probe", ("probe (inspection/detect/imaging.py", "_probe_", "check_size (")),
    ("decode", ("load_bytes (", "inspection/detect/imaging.py", "imdecode", "decode (serving/pipeline.py",
                "_decode (serving/pipeline.py")),
    ("post-process (boxes, NMS)", ("inspection/detect/postprocess.py", "inspection/detect/nms.py",
                                   "decode (inspection/detect/detector.py", "to_records (")),
    ("rules", ("inspection/rules.py",)),
    ("image write + fsync", ("inspection/store/images.py", "inspection/durable.py")),
    ("record commit + fsync", ("save_inspection (", "save_many (", "_write_group (", "_insert (")),
    ("station and idempotency reads", ("station (inspection/store/records.py", "find_by_key (")),
    ("auth", ("serving/auth.py", "inspection/store/keys.py", "serving/deps.py")),
    ("body read", ("serving/bodies.py",)),
    ("response (validation, JSON)", ("serialize_response (", "serving/schemas.py", "jsonable_encoder (",
                                     "fastapi/encoders.py")),
    ("metrics and logs", ("prometheus_client", "serving/logs.py", "logging/__init__.py")),
    ("HTTP (uvicorn protocol, starlette, fastapi)", ("uvicorn/protocols", "uvicorn/middleware", "starlette/",
                                                    "fastapi/", "h11/", "httptools")),
    ("thread hand-offs (executor queues, wake-ups, GIL waits)", ("concurrent/futures", "threading.py",
                                                                 "queue.py", "anyio/")),
    # uvloop is C: samples that end in the loop's own frame are its native work (sockets,
    # httptools' parsing, scheduling callbacks).
    ("event loop (uvloop: sockets, HTTP parsing, scheduling)", ("asyncio/", "uvicorn/", "selectors.py")),
]
OTHER = "other"


# Threads of `qc serve` by the name Python gave them (py-spy dump reads the names), in the order
# the names are tried. Threads without a Python name are ONNX Runtime's intra-op pool.
THREADS: list[tuple[str, str]] = [
    ("MainThread", "event loop: HTTP, routing, auth, validation, responses, logs"),
    ("inference", "inference thread: session.run (and a single chunk's tensor)"),
    ("to-tensor", "tensor conversion ahead of session.run"),
    ("asyncio", "asyncio.to_thread: decode, letterbox, station and idempotency reads"),
    ("uvloop", "asyncio.to_thread: decode, letterbox, station and idempotency reads"),  # uvloop names them so
    ("commit", "commit thread: boxes, rules, image and record writes with their fsyncs"),
    ("AnyIO", "FastAPI's threads for plain-def dependencies and routes"),
]
ORT_POOL = "ONNX Runtime's own threads (session.run)"
INFERENCE = ("inference thread: session.run (and a single chunk's tensor)", ORT_POOL)


def thread_kind(name: str | None) -> str:
    if name is None:
        return ORT_POOL
    for prefix, kind in THREADS:
        if name.startswith(prefix):
            return kind
    return f"other ({name})"


def thread_names(pid: int) -> dict[int, str]:
    """Native thread id -> Python thread name, from `py-spy dump` (threads Python does not
    know, such as ONNX Runtime's pool, are absent)."""
    dumped = subprocess.run([py_spy(), "dump", "--pid", str(pid), "--nonblocking"], check=False, capture_output=True,
                            text=True, timeout=60).stdout
    return {int(tid): name for tid, name in re.findall(r'^Thread (\d+) \([^)]*\): "([^"]*)"', dumped, re.MULTILINE)}


def stage_of(stack: str) -> str:
    frames = stack.split(";")
    for frame in reversed(frames):
        for stage, patterns in STAGES:
            if any(pattern in frame for pattern in patterns):
                return stage
    return OTHER


def stage_shares(samples: Counter[str]) -> dict[str, float]:
    """Each stage's share of all samples, largest first."""
    by_stage: Counter[str] = Counter()
    for stack, count in samples.items():
        by_stage[stage_of(stack)] += count
    total = sum(by_stage.values()) or 1
    return {stage: count / total for stage, count in by_stage.most_common()}


def read_raw(path: Path) -> Counter[str]:
    """py-spy's `--format raw` output: one collapsed stack and its count per line."""
    samples: Counter[str] = Counter()
    for line in path.read_text().splitlines():
        stack, _, count = line.rpartition(" ")
        if stack and count.isdigit():
            samples[stack] += int(count)
    return samples


def py_spy() -> str:
    found = shutil.which("py-spy") or str(Path(sys.executable).with_name("py-spy"))
    if not Path(found).is_file():
        sys.exit("py-spy is not installed: pip install 'qc[dev]' (or pip install py-spy)")
    return found


def start_profile(pid: int, seconds: float, out: Path, *, subprocesses: bool) -> subprocess.Popen:
    """py-spy recording `pid` (and its children: the `--workers` processes) for `seconds`."""
    command = [py_spy(), "record", "--pid", str(pid), "--duration", str(int(seconds)), "--rate", "200",
               "--format", "raw", "--output", str(out), "--nonblocking"]
    if subprocesses:
        command.append("--subprocesses")
    return subprocess.Popen(command, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
