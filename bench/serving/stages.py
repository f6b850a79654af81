"""Where a served frame's CPU goes: py-spy's sampled stacks of `qc serve`, sorted into stages.

    samples = profile(pids=[server.pid], seconds=15, out=Path("/tmp/serve.txt"))   # py-spy record
    shares = stage_shares(samples)          # {"decode": 0.21, "inference (session.run)": 0.55, ...}

py-spy samples every thread that is on the CPU (idle ones, waiting on a lock, a socket or the
queue, are left out), so a stage's share of the samples is its share of the process's CPU
time. Multiplied by the CPU-ms the process spent per answered frame (read from /proc), that
gives CPU-ms per frame per stage.

A stack belongs to the first stage whose pattern matches, looking from the innermost frame
outwards: `decode (inspection/detect/detector.py)` under `_judge_and_commit` is post-processing,
`imdecode` under `Frame.decode` is decoding.
"""

from __future__ import annotations

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
