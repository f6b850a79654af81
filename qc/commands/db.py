"""`qc db`: the record database (SQLite by default, PostgreSQL by QC_DATABASE_URL).

Example::

    qc db upgrade            # apply the schema migrations (the service also does at start)

`open_db()` is the database the administering commands (`qc stations`, `qc keys`) work on.
"""

from __future__ import annotations

import typer

app = typer.Typer(help="The record database (SQLite by default, PostgreSQL by QC_DATABASE_URL).",
                  no_args_is_help=True)


def open_db():
    """The database of QC_HOME / QC_DATABASE_URL, migrated (`Database.from_settings`)."""
    from inspection.settings import Settings
    from inspection.store.database import Database

    return Database.from_settings(Settings())


@app.command("upgrade")
def db_upgrade() -> None:
    """Apply the schema migrations (the service also does this at start)."""
    db = open_db()
    typer.echo(f"database at revision {db.revision()}")
