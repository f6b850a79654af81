"""`qc label`: the Label Studio round trip (setup, sample, push, pull, status).

Label Studio is reached with QC_LABEL_STUDIO_URL and QC_LABEL_STUDIO_TOKEN; the project is
QC_LABEL_PROJECT (labeling/settings.py). The SDK is imported only when a command talks to
Label Studio.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(help="Send flagged frames to Label Studio and bring the labels back.", no_args_is_help=True)


def _bridge():
    from labeling.bridge import Bridge

    return Bridge()


@app.command("setup")
def setup(
    update: Annotated[bool, typer.Option(help="Replace a project's label config that does not fit the model.")] = False,
    webhook_url: Annotated[str | None, typer.Option(help="Register a webhook to this URL "
                                                    "(http://SERVICE/v1/hooks/label-studio).")] = None,
) -> None:
    """Create the Label Studio project with the production model's classes, or check it."""
    _project, done = _bridge().setup(update=update, webhook_url=webhook_url)
    for line in done:
        typer.echo(line)


@app.command("push")
def push(
    inspection_ids: Annotated[list[str] | None, typer.Argument(help="Inspection ids to send (default: "
                                                                 "only what is queued).")] = None,
    sampled: Annotated[bool, typer.Option("--sample", help="Queue what `qc label sample` picks first.")] = False,
    policy: Annotated[Path | None, typer.Option(help="Sampling policy YAML for --sample.")] = None,
    wait: Annotated[float, typer.Option(help="Keep retrying (with backoff) for up to this many seconds.")] = 0.0,
) -> None:
    """Queue inspections and send what is due; when Label Studio is down they stay queued
    (durably) and are retried by the next push."""
    bridge = _bridge()
    reasons = None
    ids = list(inspection_ids or [])
    if sampled:
        picks = bridge.sample(_policy(policy))
        ids += [p.inspection_id for p in picks]
        reasons = {p.inspection_id: p.reasons for p in picks}
    result = bridge.push(ids, reasons=reasons or {i: [{"reason": "chosen"}] for i in ids}, wait_s=wait)
    typer.echo(json.dumps({"queued": len(result.queued), "pushed": len(result.pushed),
                           "recovered": len(result.recovered), "waiting": result.waiting}))
    if result.error:
        typer.echo(f"error: {result.error}", err=True)
        raise typer.Exit(3)


@app.command("pull")
def pull(
    policy: Annotated[Path | None, typer.Option(help="Sampling policy YAML: its review_labels and negatives "
                                                "(default: QC_LABEL_POLICY, else the shipped one).")] = None,
) -> None:
    """Write what was labelled since the last pull as the next dataset version: Label Studio's
    annotations (fetched when QC_LABEL_STUDIO_URL is set), frames labelled on the review page,
    and PASS frames as background images, as the policy says."""
    version = _bridge().pull(policy=_policy(policy))
    if version is None:
        typer.echo("nothing new to pull: no task labelled and no frame reviewed since the last pull", err=True)
        return
    typer.echo(json.dumps({"version": version.ref, "images": len(version.entries),
                           "new": version.manifest["source"].get("new_images"),
                           "labelled_by": version.manifest["source"].get("labelled_by")}))


@app.command("status")
def status() -> None:
    """How many frames are queued, pushed, labelled and pulled, and the last push error."""
    report = _bridge().status()
    typer.echo(json.dumps(report, default=str, indent=1))


def _policy(policy_file: Path | None):
    """The --policy file, or None: the bridge's own (QC_LABEL_POLICY, else the shipped one)."""
    from labeling.sampling.policy import SamplingPolicy

    return SamplingPolicy.load(policy_file) if policy_file else None


@app.command("sample")
def sample_command(
    policy: Annotated[Path | None, typer.Option(
        help="Sampling policy YAML (default: QC_LABEL_POLICY, else the shipped one; printed).")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run/--queue", help="Only show the picks, or queue them.")] = True,
) -> None:
    """What the active-learning sampler would send to labeling, and why each frame."""
    from labeling.sampling.policy import policy_path

    bridge = _bridge()
    picks = bridge.sample(_policy(policy), queue=not dry_run)
    typer.echo(f"policy: {policy or bridge.settings.label_policy or policy_path()}", err=True)
    for pick in picks:
        typer.echo(json.dumps({"inspection": pick.inspection_id, "station": pick.station, "day": pick.day,
                               "verdict": pick.verdict, "reasons": pick.reasons}))
    if not dry_run:
        typer.echo(f"queued {len(picks)} for {bridge.project_title}; send them with qc label push", err=True)
