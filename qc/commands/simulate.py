"""`qc simulate`: a simulated line posting frames to the service through the real station agent.

Example::

    export QC_STATION_KEY=qc_...
    qc simulate --station demo --url http://127.0.0.1:8000 --frames 500 --rate 10 \\
        --scenario defect-step:at=200,rate=0.5 --scenario outage:at=300,frames=40
    qc simulate --station demo --folder datasets/shots --rate 5

Frames are synthetic (inspection.data.synth, `--defect-rate` of them with defects) or a
folder's images; scenarios: `defect-step:at=N,rate=R`, `drift:at=N,per_frame=G` (brightness
gain grows by G per frame), `blur:at=N,sigma=S`, `outage:at=N,frames=M` (the network is down
while frames N..N+M-1 are captured; they are spooled and replayed). Each part's answer is a
JSON line on stdout; the run's report (counts, drops, deadline misses, latency) on stderr.
"""

from __future__ import annotations

import json
import sys
import tempfile
from pathlib import Path
from typing import Annotated

import typer


def simulate(
    station: Annotated[str, typer.Option(help="Station id on the service.")],
    url: Annotated[str, typer.Option(help="The inspection service.")] = "http://127.0.0.1:8000",
    frames: Annotated[int, typer.Option(min=1, help="How many synthetic frames.")] = 200,
    rate: Annotated[float, typer.Option(min=0.01, help="Frames per second.")] = 5.0,
    defect_rate: Annotated[float, typer.Option(min=0.0, max=1.0, help="Share of frames with defects.")] = 0.05,
    seed: Annotated[int, typer.Option(min=0)] = 0,
    size: Annotated[int, typer.Option(min=64, help="Synthetic frame side, px.")] = 320,
    folder: Annotated[Path | None, typer.Option(help="Post this folder's images instead.")] = None,
    scenario: Annotated[list[str] | None, typer.Option(help="kind:key=value,... (repeatable).")] = None,
    spool: Annotated[Path | None, typer.Option(help="Spool folder (default: a new temporary one).")] = None,
    deadline_ms: Annotated[float, typer.Option(help="Line deadline, ms.")] = 1000.0,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """Simulate a line: frames at a rate through the station agent, with scenarios."""
    from agent.client import ServiceClient
    from agent.config import AgentConfig
    from agent.runner import Agent
    from agent.simulate import (
        OutageClient,
        SimulatedSource,
        SyntheticFrames,
        folder_frames,
        parse_scenarios,
    )
    from qc.commands.station import run_agent, start_logging

    start_logging(verbose)
    scenarios = parse_scenarios(scenario or [])
    spool_dir = spool or Path(tempfile.mkdtemp(prefix="qc-simulate-"))
    config = AgentConfig.load(overrides={
        "station": station, "service": {"url": url},
        "source": {"uri": str(folder or "<synthetic>"), "kind": "glob", "fps": rate, "exit_when_done": True},
        "part_id": "filename", "spool": {"dir": str(spool_dir)}, "line": {"deadline_ms": deadline_ms}})
    inner = folder_frames(folder) if folder else SyntheticFrames(n=frames, defect_rate=defect_rate, seed=seed,
                                                                  width=size, height=size)
    source = SimulatedSource(inner, scenarios)
    client = ServiceClient(url, key=config.service.api_key(), station=station,
                           connect_timeout_s=config.service.connect_timeout_s, timeout_s=config.service.timeout_s)
    report = run_agent(Agent(config, source=source, client=OutageClient(client, source)))
    print(json.dumps({"report": report}), file=sys.stderr)
