"""`qc users`: staff accounts for the review pages (add, list, disable, passwd).

Example::

    qc users add kim --role reviewer --display-name "Kim Jiwoo"    # asks for the password twice
    QC_USER_PASSWORD=... qc users add kim                            # or takes it from the environment
    qc users list
    qc users disable kim                                             # its sessions end at once
"""

from __future__ import annotations

import os
from typing import Annotated

import typer

app = typer.Typer(help="Staff accounts for the review pages (passwords stored as argon2 hashes).",
                  no_args_is_help=True)

PASSWORD_ENV = "QC_USER_PASSWORD"


def _users():
    from inspection.settings import Settings
    from inspection.store.database import Database
    from inspection.store.users import UserStore

    return UserStore(Database.from_settings(Settings()))


def _password() -> str:
    """From QC_USER_PASSWORD (scripts), else asked twice without echo."""
    return os.environ.get(PASSWORD_ENV) or typer.prompt("password", hide_input=True, confirmation_prompt=True)


@app.command("add")
def add(
    name: Annotated[str, typer.Argument(help="What the person types to sign in, e.g. kim.jiwoo.")],
    role: Annotated[str, typer.Option(help="reviewer, engineer or admin.")] = "reviewer",
    display_name: Annotated[str, typer.Option(help="Shown on the pages and in the audit trail.")] = "",
) -> None:
    """Add a person; the password comes from QC_USER_PASSWORD or is asked for."""
    user = _users().add(name, password=_password(), role=role, display_name=display_name)
    typer.echo(f"added {user.name} ({user.role}); they sign in at /login")


@app.command("list")
def list_users() -> None:
    """Names, roles and whether each account is active."""
    users = _users().list()
    if not users:
        typer.echo("no users yet; add one with qc users add NAME --role reviewer", err=True)
    for user in users:
        typer.echo(f"{user.name}\t{user.role}\t{'active' if user.active else 'disabled'}\t{user.display_name}")


@app.command("disable")
def disable(name: Annotated[str, typer.Argument(help="The user's name (see qc users list).")]) -> None:
    """Stop a person signing in; their open sessions end now (their decisions stay)."""
    _users().disable(name)
    typer.echo(f"disabled {name}")


@app.command("passwd")
def passwd(name: Annotated[str, typer.Argument(help="The user's name (see qc users list).")]) -> None:
    """Set a new password (from QC_USER_PASSWORD or asked for); also lifts a sign-in lock and
    re-enables a disabled account."""
    _users().set_password(name, _password())
    typer.echo(f"new password set for {name}")
