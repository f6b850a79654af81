"""Entry point of the `qc` console command.

Every command module registers itself here. Errors that the user can fix (`QCError`) are
printed as one clear line on stderr with exit code 2, never as a traceback; so is a pydantic
ValidationError that escaped unwrapped.
"""

from __future__ import annotations

import sys
from typing import Annotated

import typer

from inspection.errors import QCError, validation_problems

app = typer.Typer(
    name="qc",
    help="Visual quality inspection: synthesise data, train, evaluate and serve defect detectors.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


def _print_version(wanted: bool) -> None:
    if not wanted:
        return
    from importlib.metadata import PackageNotFoundError, version

    try:
        typer.echo(f"qc {version('qc')}")
    except PackageNotFoundError:
        typer.echo("qc is not installed as a package (no version recorded); run pip install -e .", err=True)
        raise typer.Exit(2) from None
    raise typer.Exit()


@app.callback()
def _options(
    version: Annotated[
        bool,
        typer.Option("--version", help="Print qc's version and exit.", callback=_print_version, is_eager=True),
    ] = False,
) -> None:
    """Visual quality inspection: synthesise data, train, evaluate and serve defect detectors."""


def _register() -> None:
    # Command modules import only typer at the top; each command imports what it needs.
    from qc.commands import (
        dataset,
        db,
        evaluate,
        goodonly,
        keys,
        label,
        loop,
        models,
        predict,
        report,
        serve,
        simulate,
        station,
        stations,
        synth,
        train,
        users,
    )

    app.command("synth")(synth.synth)
    app.command("predict")(predict.predict)
    app.command("train")(train.train)
    app.command("export")(train.export)
    app.command("eval")(evaluate.evaluate)
    app.command("serve")(serve.serve)
    app.command("report")(report.report)
    app.command("simulate")(simulate.simulate)
    app.add_typer(dataset.app, name="dataset")
    app.add_typer(goodonly.app, name="goodonly")
    app.add_typer(label.app, name="label")
    app.add_typer(loop.app, name="loop")
    app.add_typer(models.app, name="models")
    app.add_typer(stations.app, name="stations")
    app.add_typer(keys.app, name="keys")
    app.add_typer(db.app, name="db")
    app.add_typer(users.app, name="users")
    app.add_typer(station.app, name="station")


_register()


def main() -> None:
    try:
        app()
    except QCError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
    except Exception as error:  # a pydantic model validated outside a QCError wrapper
        from pydantic import ValidationError

        if not isinstance(error, ValidationError):
            raise
        print(f"error: invalid {error.title}: {validation_problems(error)}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
