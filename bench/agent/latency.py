"""The agent's own added latency: capture to the line's answer, less the service's HTTP round
trip, measured through a real `qc serve` on this machine.

Example::

    python -m bench.agent.latency --model .cache/untrained-yolo26n-160-v1.onnx --frames 60 --rate 4

Synthetic 640x480 frames (inspection.data.synth) at `--rate` frames per second, below the
service's capacity so no frame waits behind another; once with the spool fsynced (the
default) and once without, to show what durability costs. Prints a Markdown table.
"""

from __future__ import annotations

import argparse
import io
import os
import platform
import subprocess
import sys
import tempfile
from pathlib import Path


def main() -> None:
    from agent.client import ServiceClient
    from agent.config import AgentConfig
    from agent.runner import Agent
    from agent.simulate import SimulatedSource, SyntheticFrames
    from bench.common import REPO
    from serving.launch import free_port, wait_ready
    from tests.agent_fixtures import make_home

    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--model", type=Path, default=REPO / ".cache" / "untrained-yolo26n-160-v1.onnx")
    parser.add_argument("--frames", type=int, default=60)
    parser.add_argument("--rate", type=float, default=4.0)
    args = parser.parse_args()
    work = Path(tempfile.mkdtemp(prefix="qc-bench-agent-"))
    home = make_home(work / "home", args.model)
    port = free_port()
    env = {**{k: v for k, v in os.environ.items() if not k.startswith("QC_")}, "QC_HOME": str(home.path),
           "QC_PORT": str(port), "QC_PROVIDERS": "cpu", "QC_PASS_SAMPLE_RATE": "0"}
    log = work / "server.log"
    with log.open("wb") as out:
        server = subprocess.Popen([str(Path(sys.executable).with_name("qc")), "serve"], env=env, stdout=out,
                                  stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_ready(url, server, timeout=90, log_path=log)
        rows = []
        for fsync in (True, False):
            config = AgentConfig.load(overrides={
                "station": "passing", "service": {"url": url, "key": home.station_key},
                "source": {"uri": "<synthetic>", "kind": "glob", "fps": args.rate, "exit_when_done": True},
                "spool": {"dir": str(work / f"spool-{fsync}"), "fsync": fsync},
                "line": {"deadline_ms": 10000}, "heartbeat": {"interval_s": 3600}})
            source = SimulatedSource(SyntheticFrames(n=args.frames, defect_rate=0.1, width=640, height=480), [])
            client = ServiceClient(url, key=home.station_key, station="passing")
            agent = Agent(config, source=source, client=client, stdout=io.StringIO())
            try:
                agent.run()
            finally:
                agent.close()
            report = agent.report()
            rows.append((fsync, report))
        print(f"machine: {platform.machine()}, {os.cpu_count()} cores (shared); model {args.model.name}; "
              f"{args.frames} frames 640x480 JPEG q90 at {args.rate:g}/s\n")
        print("| spool fsync | encode + spool ms p50 | agent added ms p50 | p95 | capture to answer ms p50 | p95 |")
        print("|---|---|---|---|---|---|")
        for fsync, report in rows:
            lat = report["latency"]
            print(f"| {'on' if fsync else 'off'} | {report['capture_ms_p50']} | {lat['added_ms_p50']} | "
                  f"{lat['added_ms_p95']} | {lat['total_ms_p50']} | {lat['total_ms_p95']} |")
    finally:
        server.terminate()
        server.wait(timeout=60)


if __name__ == "__main__":
    main()
