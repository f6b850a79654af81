"""`qc models`: the registry from the command line: list, show, add, promote, rollback."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(help="The model registry under $QC_HOME/models.", no_args_is_help=True)


def _registry():
    from inspection.models.registry import Registry
    from inspection.settings import Settings

    return Registry(Settings().models_dir)


@app.command("list")
def list_models(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """Every model name with its versions; * marks production."""
    registry = _registry()
    if as_json:
        rows = [{"name": name, "versions": registry.versions(name),
                 "production": registry.production_version(name)} for name in registry.names()]
        typer.echo(json.dumps(rows, indent=2))
        return
    if not registry.names():
        typer.echo(f"no models in {registry.root}; add one with qc models add model.onnx --name NAME "
                   "or qc export RUN --register NAME", err=True)
    for name in registry.names():
        production = registry.production_version(name)
        versions = " ".join(f"{v}*" if v == production else v for v in registry.versions(name))
        typer.echo(f"{name}\t{versions}")


@app.command("show")
def show(ref: Annotated[str, typer.Argument(help="name@version, name@latest, or name (production).")]) -> None:
    """Print a version's model card."""
    entry = _registry().resolve(ref)
    typer.echo(json.dumps({"ref": entry.ref, "path": str(entry.model_path), **entry.card}, indent=2))


@app.command("add")
def add(
    model: Annotated[Path, typer.Argument(help="An ONNX detection model (trained here or elsewhere), or a good-only "
                                          "model (.qcgood, from qc goodonly build).")],
    name: Annotated[str, typer.Option(help="Registry name.")] = "default",
    promote: Annotated[bool, typer.Option(help="Promote it (through the gate) once added.")] = False,
    weights: Annotated[Path | None, typer.Option(help="The .pt it came from, kept for fine-tuning.")] = None,
) -> None:
    """Register an ONNX model (or a good-only .qcgood) as the next version of NAME; its card records
    where it came from."""
    register(model, name=name, weights=weights, promote=promote)


def register(model: Path, *, name: str, weights: Path | None = None, promote: bool = False,
             err: bool = False):
    """Add `model` (its card made from its metadata) and, with `promote`, promote it through
    the gate: what `qc models add` and `qc export --register` share. `err` prints to stderr."""
    from inspection.errors import ModelError
    from inspection.models.card import model_card

    if weights is not None and not Path(weights).is_file():
        raise ModelError(f"{weights}: no such weights file")
    entry = _registry().add(name, model, card=model_card(model), weights=weights)
    typer.echo(f"added {entry.ref}", err=err)
    if promote:
        _promote(entry.name, entry.version, force=False, holdout=None, split="test", err=err)
    return entry


@app.command("holdout")
def holdout(
    name: Annotated[str, typer.Argument(help="Registry name.")],
    data: Annotated[str, typer.Argument(help="Dataset version name@v, or a data.yaml.")],
) -> None:
    """Set the frozen holdout the promotion gate evaluates on."""
    stored = _set_holdout(_registry(), name, data)
    typer.echo(f"{name}: holdout is {stored}")


def _set_holdout(registry, name: str, data: str) -> str:
    """Check and store a holdout: NAME must have versions; a data.yaml (or its folder) must
    exist and is stored as an absolute path; a dataset version must open and is stored as
    NAME@VERSION (so "pcb" or "pcb@latest" freeze the version that is newest now)."""
    from inspection.data.versions import open_version
    from inspection.errors import DatasetError, NotFound

    if not registry.versions(name):
        known = ", ".join(registry.names()) or "none"
        raise NotFound(
            f"model {name} has no versions (models: {known}); add one with qc models add"
        )
    path = Path(data).expanduser()
    if data.endswith((".yaml", ".yml")) or path.exists():  # as scoring.load_split tells them apart
        yaml_file = path / "data.yaml" if path.is_dir() else path
        if not yaml_file.is_file():
            raise DatasetError(
                f"{yaml_file}: no such data.yaml; pass a YOLO data.yaml or a dataset version "
                "NAME@VERSION"
            )
        stored = str(path.resolve())
    else:
        stored = open_version(data).ref  # DatasetError names the datasets there are
    registry.set_holdout(name, stored)
    return stored


def _evaluate_on_holdout(registry, entry, holdout: str, split: str):
    from inspection.evaluate.scoring import gate_evaluation

    result = gate_evaluation(entry.model_path, holdout, split=split)  # a .qcgood too
    evaluations = {**entry.card.get("evaluations", {}), holdout: result}
    return registry.update_card(entry, evaluations=evaluations)


def _promote(name: str, version: str, *, force: bool, holdout: str | None, split: str,
             err: bool = False) -> None:
    from inspection.models import promotion

    registry = _registry()  # one Registry: it hashes each model file once
    if holdout:
        _set_holdout(registry, name, holdout)
    production = registry.production_version(name)
    chosen = registry.holdout(name)
    decision = "check"  # promotion.promote runs the gate unless it ran here
    if production and production != version and chosen and not force:
        for ref in (version, production):  # evaluate whatever is missing, once, into the cards
            entry = registry.get(name, ref)
            if promotion.evaluation_on(entry, chosen) is None:
                typer.echo(f"evaluating {entry.ref} on the holdout {chosen} ...", err=True)
                _evaluate_on_holdout(registry, entry, chosen, split)
        decision = promotion.check(registry, name, version)
        if decision is not None:
            typer.echo(decision.table(), err=True)
    pointer = promotion.promote(registry, name, version, force=force, decision=decision)
    typer.echo(f"{name}: production is now {pointer['version']} (was {pointer['previous']})")


@app.command("promote")
def promote(
    name: Annotated[str, typer.Argument(help="Registry name.")],
    version: Annotated[str, typer.Argument(help="Version to promote, e.g. v3.")],
    holdout: Annotated[str | None, typer.Option(help="Set the frozen holdout (name@v or data.yaml) first.")] = None,
    split: Annotated[str, typer.Option(help="Split of the holdout data to evaluate on.")] = "test",
    force: Annotated[bool, typer.Option(help="Skip the gate (recorded in the pointer).")] = False,
) -> None:
    """Promote through the gate: evaluated on the frozen holdout against production; a refused
    promotion prints the comparison table and exits 2."""
    _promote(name, version, force=force, holdout=holdout, split=split)


@app.command("rollback")
def rollback(name: Annotated[str, typer.Argument(help="Registry name.")]) -> None:
    """Production back to the newest earlier production version that loads (no gate: it
    served before; versions that no longer load are skipped)."""
    from inspection.models import promotion

    pointer = promotion.rollback(_registry(), name)
    typer.echo(f"{name}: production is now {pointer['version']} (was {pointer['previous']})")


@app.command("triton")
def triton(
    ref: Annotated[str, typer.Argument(help="name@version, name@latest, or name (production).")],
    repository: Annotated[Path, typer.Argument(help="The Triton model repository folder (made if missing).")],
    max_batch: Annotated[int, typer.Option(help="Triton's max_batch_size (frames in one run).")] = 8,
    instances: Annotated[int, typer.Option(help="Copies of the model Triton runs at once.")] = 1,
    kind: Annotated[str, typer.Option(help="gpu or cpu: where the copies run.")] = "gpu",
    queue_delay_us: Annotated[int, typer.Option(help="How long Triton waits to fill a batch.")] = 3000,
) -> None:
    """Write a registry version into a Triton model repository: REPOSITORY/NAME/config.pbtxt and
    REPOSITORY/NAME/N/model.onnx (registry vN is Triton version N). Serve it with
    `tritonserver --model-repository REPOSITORY` and QC_BACKEND=triton QC_TRITON_URL=host:8000."""
    from inspection.errors import ConfigError
    from inspection.models.triton_repo import InstanceKind, write_version

    try:
        chosen = InstanceKind(kind.strip().lower())
    except ValueError:
        raise ConfigError(f"--kind {kind!r}: use gpu or cpu") from None
    entry = _registry().resolve(ref)
    written = write_version(entry, repository, max_batch=max_batch, instances=instances,
                            kind=chosen, queue_delay_us=queue_delay_us)
    for note in written.notes:
        typer.echo(f"note: {entry.ref}: {note}", err=True)
    typer.echo(f"{entry.ref} -> {written.model} (Triton version {written.version}); config {written.config}")
