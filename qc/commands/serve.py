"""`qc serve`, `qc db`, `qc stations`, `qc keys`: running and administering the service."""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import Annotated

import typer

db_app = typer.Typer(help="The record database (SQLite by default, PostgreSQL by QC_DATABASE_URL).",
                     no_args_is_help=True)
stations_app = typer.Typer(help="Inspection stations, their versioned rules and product profiles.",
                          no_args_is_help=True)
keys_app = typer.Typer(help="API keys (stored hashed; the key is shown once).", no_args_is_help=True)


def serve(
    host: Annotated[str | None, typer.Option(help="Address to listen on (QC_HOST).")] = None,
    port: Annotated[int | None, typer.Option(help="Port (QC_PORT).")] = None,
    model: Annotated[str | None, typer.Option(help="Registry model name to serve (QC_MODEL_NAME).")] = None,
    workers: Annotated[int, typer.Option(
        min=1, help="Service processes on this port, sharing the database and image store; each has "
        "its own model and micro-batcher. For hosts with many cores (docs/serving.md).")] = 1,
) -> None:
    """Run the inspection service (uvicorn). Settings come from QC_* variables, .env or QC_CONFIG."""
    from inspection.errors import ConfigError

    try:
        import uvicorn

        from serving.app import create_app
        from serving.settings import ServeSettings
        from serving.slow_clients import uvicorn_options
    except ImportError as error:
        raise ConfigError(f"qc serve needs the serve extra ({error.name} is missing): "
                          "pip install 'qc[serve,cpu]' (or 'qc[serve,gpu]')") from error

    given = {"host": host, "port": port, "model_name": model}
    overrides = {k: v for k, v in given.items() if v is not None}
    settings = ServeSettings(**overrides)
    _preflight(settings)
    if workers == 1:
        # Slow and idle clients are bounded (QC_HEADER_TIMEOUT_S, QC_KEEP_ALIVE_S; serving/slow_clients.py).
        uvicorn.run(create_app(settings), host=settings.host, port=settings.port, log_level="warning",
                    timeout_graceful_shutdown=30, **uvicorn_options(settings))
        return
    # Several processes: uvicorn binds the port once and starts `workers` processes that accept
    # on it, each building its app from the environment (serving.app:create_app as a factory);
    # the options given here reach them as the QC_* variables they override. They share the
    # database (idempotency is its unique constraint) and the image store (content-addressed,
    # written atomically); each follows the registry's production pointer (QC_MODEL_POLL_S),
    # so a promotion made through any of them reaches all. SIGTERM to this process stops them
    # all gracefully.
    os.environ.update({f"QC_{k.upper()}": str(v) for k, v in overrides.items()})
    uvicorn.run("serving.app:create_app", factory=True, workers=workers, host=settings.host,
                port=settings.port, log_level="warning", timeout_graceful_shutdown=30,
                **uvicorn_options(settings))


def _preflight(settings) -> None:
    """What the service checks at start, checked here first: a problem is then one line that
    names the fix, not an application-startup traceback from uvicorn."""
    from inspection.errors import NotFound
    from inspection.models.registry import Registry
    from inspection.store.database import Database

    Database.from_settings(settings).dispose()  # reachable, and migrated
    if not settings.require_model:
        return
    registry = Registry(settings.models_dir)
    name = settings.model_name
    if not registry.versions(name):
        raise NotFound(f"no model named {name} in {settings.models_dir}; register one with "
                       f"qc models add model.onnx --name {name} --promote (or serve another with --model)")
    if registry.production_version(name) is None:
        registry.production(name)  # NotFound: says how to promote one
    # A production version that does not load is the service's to handle: it starts on the
    # newest earlier one that does, loudly (serving/model_manager.py), rather than not at all.


def _db():
    from inspection.settings import Settings
    from inspection.store.database import Database

    return Database.from_settings(Settings())


@db_app.command("upgrade")
def db_upgrade() -> None:
    """Apply the schema migrations (the service also does this at start)."""
    db = _db()
    typer.echo(f"database at revision {db.revision()}")


@stations_app.command("add")
def stations_add(
    station: Annotated[str, typer.Argument(help="Station id, e.g. line1-cam2.")],
    rules: Annotated[Path | None, typer.Option(help="Rules YAML (default rules when omitted).")] = None,
    description: Annotated[str, typer.Option(help="Free text.")] = "",
) -> None:
    """Add a station with its first rules version."""
    from inspection.rules import StationRules
    from inspection.store.records import RecordStore

    parsed = StationRules.parse(_read(rules), source=str(rules)) if rules else StationRules()
    _check_classes(parsed)
    added = RecordStore(_db()).add_station(station, rules=parsed, description=description)
    typer.echo(f"station {added.id} added with rules v{added.rules_version}")


@stations_app.command("rules")
def stations_rules(
    station: Annotated[str, typer.Argument(help="Station id.")],
    rules: Annotated[Path, typer.Argument(help="Rules YAML.")],
) -> None:
    """Give a station a new rules version from a YAML file."""
    from inspection.rules import StationRules
    from inspection.store.records import RecordStore

    parsed = StationRules.parse(_read(rules), source=str(rules))
    _check_classes(parsed)
    updated = RecordStore(_db()).set_rules(station, parsed)
    typer.echo(f"station {updated.id} now uses rules v{updated.rules_version}")


@stations_app.command("reference")
def stations_reference(
    station: Annotated[str, typer.Argument(help="Station id.")],
    image: Annotated[Path, typer.Argument(help="The golden part as the station's camera sees it (JPEG, PNG, BMP).")],
) -> None:
    """Register a station's reference image (a new version): a reference model judges each
    frame against it, aligned; each inspection records the version."""
    from inspection.detect import imaging
    from inspection.errors import ImageError
    from inspection.settings import Settings
    from inspection.store.image_stores import open_image_store
    from inspection.store.references import StationReferences

    data = _read_bytes(image)
    try:
        header = imaging.probe(data)
        imaging.decode(data, header=header)  # whole, or refused before anything is stored
    except ImageError as error:
        raise ImageError(f"{image}: {error}; give a readable JPEG, PNG or BMP of the golden part") from error
    sha = open_image_store(Settings()).put(data, header.format)
    reference = StationReferences(_db()).set(station, image_sha256=sha, image_format=header.format,
                                             image_wh=(header.width, header.height), created_by="cli")
    typer.echo(f"station {station} now judges against reference v{reference.version} "
               f"({header.width}x{header.height}, sha256 {sha[:12]})")


@stations_app.command("profile")
def stations_profile(
    station: Annotated[str, typer.Argument(help="Station id.")],
    product: Annotated[str, typer.Argument(help="Product name, e.g. m8-bolt.")],
    profile: Annotated[Path, typer.Argument(help="Profile YAML: description, model, rules (docs/serving.md).")],
) -> None:
    """Give a product a new profile version at a station (the first makes the product)."""
    from inspection.errors import ConfigError
    from inspection.products import ProductProfile
    from inspection.settings import Settings
    from inspection.store.products import ProductStore

    parsed = ProductProfile.parse(_read(profile), source=str(profile))
    served = Settings().model_name
    if parsed.model is not None and parsed.model != served:
        raise ConfigError(f"{profile}: the profile names model {parsed.model}, but the service judges with "
                          f"{served} only (QC_MODEL_NAME): leave model out or name {served}")
    if parsed.rules is not None:
        _check_classes(parsed.rules)
    saved = ProductStore(_db()).set_profile(station, product, parsed)
    typer.echo(f"product {saved.name} at station {saved.station_id} now uses profile v{saved.version}")


@stations_app.command("list")
def stations_list(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON (with each station's rules).")] = False,
) -> None:
    """Stations with their current rules version."""
    from inspection.store.records import RecordStore

    stations = RecordStore(_db()).stations()
    if as_json:
        rows = [{"id": s.id, "description": s.description, "rules_version": s.rules_version,
                 "reference_version": s.reference_version, "enabled": s.rules.enabled, "product": s.product,
                 "created_at": s.created_at.isoformat(),
                 "rules": s.rules.model_dump(mode="json")} for s in stations]
        typer.echo(json.dumps(rows, indent=2))
        return
    if not stations:
        typer.echo("no stations yet; add one with qc stations add STATION [--rules rules.yaml]", err=True)
    for station in stations:
        state = "enabled" if station.rules.enabled else "disabled"
        product = f"product {station.product}" if station.product else "no product"
        reference = f"reference v{station.reference_version}" if station.reference_version else "no reference"
        typer.echo(f"{station.id}\trules v{station.rules_version}\t{state}\t{product}\t{reference}\t"
                   f"{station.description}")


def _check_classes(rules) -> None:
    """As the service does: rules must name classes the production model (QC_MODEL_NAME)
    detects. Without a production model yet, there is nothing to check against."""
    from inspection.models.registry import Registry
    from inspection.settings import Settings

    settings = Settings()
    registry = Registry(settings.models_dir)
    if rules.classes and registry.production_version(settings.model_name):
        production = registry.production(settings.model_name)
        names = production.card.get("names") or {}
        if names:
            rules.check_classes(names.values(), model=production.ref)


def _read_bytes(path: Path) -> bytes:
    from inspection.errors import ConfigError

    try:
        return path.read_bytes()
    except OSError as error:
        raise ConfigError(f"{path}: cannot read ({error.strerror}); check the path") from error


def _read(path: Path) -> str:
    from inspection.errors import ConfigError

    try:
        return path.read_text()
    except OSError as error:
        raise ConfigError(f"{path}: cannot read ({error.strerror})") from error


@keys_app.command("create")
def keys_create(
    role: Annotated[str, typer.Option(help="station, reviewer, engineer or admin.")],
    station: Annotated[list[str] | None, typer.Option(help="Station(s) a station key may inspect as.")] = None,
    name: Annotated[str, typer.Option(help="Who or what holds the key.")] = "",
) -> None:
    """Create a key; only the key is printed on stdout, so a script can capture it."""
    from inspection.store.keys import KeyStore

    typer.echo(KeyStore(_db()).create(role=role, stations=station or [], name=name))


@keys_app.command("list")
def keys_list(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """Key ids, roles and stations (never the keys themselves)."""
    from inspection.store.keys import KeyStore

    keys = KeyStore(_db()).list()
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


@keys_app.command("revoke")
def keys_revoke(key_id: Annotated[str, typer.Argument(help="Key id (see qc keys list).")]) -> None:
    """Revoke a key (the service stops accepting it within 30 s)."""
    from inspection.store.keys import KeyStore

    KeyStore(_db()).revoke(key_id)
    typer.echo(json.dumps({"revoked": key_id}))
