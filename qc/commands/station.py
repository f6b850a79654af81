"""`qc station run`: the station agent (capture, spool, ask the service, tell the line).

Example::

    export QC_STATION_KEY=qc_...            # qc keys create --role station --station press-3
    qc station run --config station.yaml
    qc station run --station press-3 --source 0 --url http://qc:8000 --trigger nth --every 5
    qc station run --station press-3 --source '/data/shots/*.png' --exit-when-done
    qc station product press-3 m8-bolt --url http://qc:8000   # the changeover, from the operator

Verdicts go to stdout as JSON lines (one per part) unless the config names other outputs;
the agent's own log goes to stderr. SIGTERM or Ctrl-C stops it; frames not yet answered stay
in the spool and are sent on the next start. See docs/station.md.
"""

from __future__ import annotations

import json
import logging
import signal
import sys
from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(help="The station agent: capture frames, ask the service, tell the line OK/NG; "
                  "the product on the line.", no_args_is_help=True)


def _overrides(**flags) -> dict:
    """Flags given on the command line, as config fields (None: not given)."""
    source = {"uri": flags["source"], "fps": flags["fps"], "exit_when_done": flags["exit_when_done"] or None}
    trigger = {"mode": flags["trigger"], "n": flags["every"]}
    return {
        "station": flags["station"],
        "service": {"url": flags["url"]},
        "source": source,
        "trigger": trigger,
        "jpeg_quality": flags["quality"],
        "part_id": flags["part_id"],
        "spool": {"dir": flags["spool"]},
        "line": {"deadline_ms": flags["deadline_ms"], "safe_default": flags["safe_default"]},
    }


def start_logging(verbose: bool) -> None:
    logging.basicConfig(stream=sys.stderr, level=logging.DEBUG if verbose else logging.INFO,
                        format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    for noisy in ("httpx", "httpcore", "asyncua", "paho"):
        logging.getLogger(noisy).setLevel(logging.WARNING)


def run_agent(agent) -> dict:
    """Run until SIGTERM/SIGINT (or the source is done); the report of the run."""
    def stop(signum, _frame):
        logging.getLogger("qc.agent").info("signal %d: stopping; unsent frames stay in the spool", signum)
        agent.stop()

    previous = {s: signal.signal(s, stop) for s in (signal.SIGTERM, signal.SIGINT)}
    try:
        agent.run()
    finally:
        for s, handler in previous.items():
            signal.signal(s, handler)
        agent.close()
    return agent.report()


@app.command("run")
def run(
    config: Annotated[Path | None, typer.Option("--config", "-c", help="Station YAML (see docs/station.md).",
                                                exists=True, dir_okay=False)] = None,
    station: Annotated[str | None, typer.Option(help="Station id, as created with qc stations add.")] = None,
    source: Annotated[str | None, typer.Option(help="Camera index, rtsp:// URL, video file, folder or glob.")] = None,
    url: Annotated[str | None, typer.Option(help="The inspection service, e.g. http://qc:8000.")] = None,
    trigger: Annotated[str | None, typer.Option(help="every, nth, motion or external.")] = None,
    every: Annotated[int | None, typer.Option(help="With --trigger nth: take one frame in N.")] = None,
    fps: Annotated[float | None, typer.Option(help="Take at most this many frames per second.")] = None,
    quality: Annotated[int | None, typer.Option(help="JPEG quality, 1-100 (default 90).")] = None,
    part_id: Annotated[str | None, typer.Option("--part-id", help="none, trigger, filename or code.")] = None,
    spool: Annotated[Path | None, typer.Option(help="Spool folder (default ./spool).")] = None,
    deadline_ms: Annotated[float | None, typer.Option(help="Line deadline for a verdict, ms.")] = None,
    safe_default: Annotated[str | None, typer.Option(help="What the line hears at the deadline: NG or REVIEW.")] = None,
    exit_when_done: Annotated[bool, typer.Option(help="Glob/video: exit once every frame is answered.")] = False,
    verbose: Annotated[bool, typer.Option("--verbose", "-v")] = False,
) -> None:
    """Run the station agent."""
    from agent.config import AgentConfig
    from agent.runner import Agent

    start_logging(verbose)
    settings = AgentConfig.load(config, overrides=_overrides(
        station=station, source=source, url=url, trigger=trigger, every=every, fps=fps, quality=quality,
        part_id=part_id, spool=spool, deadline_ms=deadline_ms, safe_default=safe_default,
        exit_when_done=exit_when_done))
    report = run_agent(Agent(settings))
    print(json.dumps({"report": report}), file=sys.stderr)


@app.command("product")
def product(
    station: Annotated[str, typer.Argument(help="Station id.")],
    name: Annotated[str | None, typer.Argument(metavar="PRODUCT", help="The product now on the line "
                                               "(one with a profile at the station).")] = None,
    clear: Annotated[bool, typer.Option("--clear", help="No product: the station's own rules judge.")] = False,
    config: Annotated[Path | None, typer.Option("--config", "-c", help="Station YAML: its service url and key.",
                                                exists=True, dir_okay=False)] = None,
    url: Annotated[str | None, typer.Option(help="The inspection service, e.g. http://qc:8000.")] = None,
) -> None:
    """The changeover: tell the service which product is on the line. Frames the agent sends
    without a product of their own (no changeover in the config) are judged as it from now on."""
    from agent.client import Outcome, ServiceClient
    from agent.config import PRODUCT_ID, AgentConfig, ServiceConfig
    from inspection.errors import ConfigError

    if clear == (name is not None):
        raise ConfigError("name the product now on the line, or give --clear for none")
    if name is not None and not PRODUCT_ID.fullmatch(name):
        raise ConfigError(f"product {name!r}: use letters, digits, '.', '_' and '-' (up to 64, starting with "
                          "a letter or digit), as its profile was saved (qc stations profile)")
    service = AgentConfig.load(config).service if config else ServiceConfig()
    if url:
        service = service.model_copy(update={"url": url})
    client = ServiceClient(service.url, key=service.api_key(), station=station,
                           connect_timeout_s=service.connect_timeout_s, timeout_s=service.timeout_s)
    try:
        answer = client.select_product(name)
    finally:
        client.close()
    if answer.kind is not Outcome.RECORDED:
        raise ConfigError(f"station {station}: the changeover was not made: {answer.reason}")
    typer.echo(f"station {station}: " + (f"product {name} on the line" if name else "no product on the line"))

