"""Entry point of the `qc` console command.

Every command module registers itself here. Errors that the user can fix (`QCError`) are
printed as one clear line on stderr with exit code 2, never as a traceback.
"""

from __future__ import annotations

import sys

import typer

from inspection.errors import QCError

app = typer.Typer(
    name="qc",
    help="Visual quality inspection: synthesise data, train, evaluate and serve defect detectors.",
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    add_completion=False,
)


def _register() -> None:
    # Imported here, not at the top, so a broken optional module names itself in the error.
    from qc.commands import evaluate, predict, synth, train

    app.command("synth")(synth.synth)
    app.command("predict")(predict.predict)
    app.command("train")(train.train)
    app.command("export")(train.export)
    app.command("eval")(evaluate.evaluate)


_register()


def main() -> None:
    try:
        app()
    except QCError as error:
        print(f"error: {error}", file=sys.stderr)
        sys.exit(2)
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        sys.exit(130)
