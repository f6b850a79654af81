"""`qc loop`: one turn from labelled frames to a gated (and maybe promoted) model, as a job.

Settings: QC_LOOP_RECIPE, QC_LOOP_MIN_NEW, QC_LOOP_EPOCHS, QC_LOOP_AUTO_PROMOTE (training/loop.py).
`qc loop --check` lists everything a turn needs, met or missing, with the fix for each
(training/loop_check.py); the Loop page shows the same list.
`--job ID` works a turn the service started (`POST /v1/loop/run` runs `qc loop --job ID` as a
child at lower CPU priority, so the line's inspections come first). A turn started here is
recorded as started by user@host from the command line; the Loop page says so.
"""

from __future__ import annotations

import json
import os
from typing import Annotated

import typer

app = typer.Typer(help="The labeling loop: labelled frames to a better model.", invoke_without_command=True)


@app.callback()
def loop(
    context: typer.Context,
    min_new: Annotated[int | None, typer.Option(help="New labelled images needed (QC_LOOP_MIN_NEW).")] = None,
    recipe: Annotated[str | None, typer.Option(help="The production recipe (QC_LOOP_RECIPE).")] = None,
    epochs: Annotated[int | None, typer.Option(help="Fine-tune epochs; 0: the recipe's (QC_LOOP_EPOCHS).")] = None,
    auto_promote: Annotated[bool | None, typer.Option("--auto-promote/--wait-for-approval",
                                                      help="Promote when the gate passes "
                                                           "(QC_LOOP_AUTO_PROMOTE).")] = None,
    job: Annotated[str | None, typer.Option(help="Work the running job the service created (POST /v1/loop/run).",
                                            hidden=True)] = None,
    nice: Annotated[int, typer.Option(help="Lower this process's CPU priority by N (0-19).", min=0, max=19)] = 0,
    check: Annotated[bool, typer.Option("--check", help="Run no turn: list every prerequisite of one, met or "
                                        "missing, with the command that fixes each; exit 1 if any is missing.")
                     ] = False,
    as_json: Annotated[bool, typer.Option("--json", help="With --check: the list as JSON.")] = False,
) -> None:
    """Run one turn (or resume an interrupted one); refuses while another turn runs."""
    if context.invoked_subcommand is not None:
        return
    from training.loop import LoopSettings, describe, run_turn

    given = {"loop_min_new": min_new, "loop_recipe": recipe, "loop_epochs": epochs,
             "loop_auto_promote": auto_promote}
    settings = LoopSettings(**{k: v for k, v in given.items() if v is not None})
    if check:
        from training.loop_check import check_loop

        report = check_loop(settings)
        typer.echo(json.dumps(report.to_json()) if as_json else report.text())
        raise typer.Exit(0 if report.ready else 1)
    if nice:
        os.nice(nice)
    turn = run_turn(settings, job_id=job, created_by=who_runs_this(), via="cli",
                    say=lambda message: typer.echo(message, err=True))
    typer.echo(describe(turn))
    if turn.state.value == "failed":
        raise typer.Exit(2)


def who_runs_this() -> str:
    """user@host of this command: the Loop page names who started a turn from a terminal."""
    import getpass
    import socket

    try:
        user = getpass.getuser()
    except (KeyError, OSError):  # a container's uid with no passwd entry and no USER
        user = f"uid {os.getuid()}"
    return f"{user}@{socket.gethostname()}"


@app.command("status")
def status(limit: Annotated[int, typer.Option(help="How many recent turns.")] = 5) -> None:
    """The running turn (step and message) and the recent ones with their results."""
    from inspection.settings import Settings
    from inspection.store.database import Database
    from inspection.store.jobs import JobStore
    from training.loop import KIND, describe

    jobs = JobStore(Database.from_settings(Settings()))
    recent = jobs.recent(KIND, limit=limit)
    if not recent:
        typer.echo("no loop turn yet; run qc loop", err=True)
    for job in recent:
        typer.echo(describe(job))
