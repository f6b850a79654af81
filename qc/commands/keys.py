"""`qc keys`: API keys (stored hashed; the key is shown once).

Example::

    KEY=$(qc keys create --role station --station line1 --name "line 1 camera")
    qc keys list --json
    qc keys revoke KEY_ID
"""

from __future__ import annotations

import json
from typing import Annotated

import typer

from qc.commands.db import open_db

app = typer.Typer(help="API keys (stored hashed; the key is shown once).", no_args_is_help=True)


@app.command("create")
def keys_create(
    role: Annotated[str, typer.Option(help="station, reviewer, engineer or admin.")],
    station: Annotated[list[str] | None, typer.Option(help="Station(s) a station key may inspect as.")] = None,
    name: Annotated[str, typer.Option(help="Who or what holds the key.")] = "",
) -> None:
    """Create a key; only the key is printed on stdout, so a script can capture it."""
    from inspection.store.keys import KeyStore

    typer.echo(KeyStore(open_db()).create(role=role, stations=station or [], name=name))


@app.command("list")
def keys_list(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """Key ids, roles and stations (never the keys themselves)."""
    from inspection.store.keys import KeyStore

    keys = KeyStore(open_db()).list()
    if as_json:
        rows = [{"id": k.id, "role": getattr(k.role, "value", k.role),  # a str, or an enum of them
                 "stations": list(k.stations), "name": k.name, "active": k.revoked_at is None,
                 "created_at": k.created_at.isoformat(),
                 "revoked_at": k.revoked_at.isoformat() if k.revoked_at else None} for k in keys]
        typer.echo(json.dumps(rows, indent=2))
        return
    for key in keys:
        state = "revoked" if key.revoked_at else "active"
        typer.echo(f"{key.id}\t{key.role}\t{','.join(key.stations)}\t{state}\t{key.name}")


@app.command("revoke")
def keys_revoke(key_id: Annotated[str, typer.Argument(help="Key id (see qc keys list).")]) -> None:
    """Revoke a key (the service stops accepting it within 30 s)."""
    from inspection.store.keys import KeyStore

    KeyStore(open_db()).revoke(key_id)
    typer.echo(json.dumps({"revoked": key_id}))
