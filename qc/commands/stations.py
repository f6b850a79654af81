"""`qc stations`: inspection stations, their versioned rules, reference images and product
profiles, written to the database the service reads (the service's API does the same over HTTP).

Example::

    qc stations add line1 --rules rules.yaml
    qc stations reference line1 golden.png
    qc stations list

A new part in minutes, with no labelled defect (docs/goodonly.md)::

    qc stations reference part9-cam1 golden.png          # register the golden part
    qc goodonly build --station part9-cam1 --good good-frames/ --out part9.qcgood --register part9 --promote

(`qc station`, singular, is the station agent on the station PC: qc/commands/station.py.)
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer

from qc.commands.db import open_db

app = typer.Typer(
    help="Inspection stations, their versioned rules, reference images and product profiles.\n\n"
    "A new part in minutes, before any defect is labelled: register its golden part (qc stations reference "
    "STATION golden.png), put some good frames of it in a folder, and build its good-only model (qc goodonly "
    "build --station STATION --good FOLDER --out part.qcgood --register NAME --promote); its boxes are REVIEW "
    "until the rules' anomaly_fail_conf trusts them (docs/goodonly.md).",
    no_args_is_help=True)


@app.command("add")
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
    added = RecordStore(open_db()).add_station(station, rules=parsed, description=description)
    typer.echo(f"station {added.id} added with rules v{added.rules_version}")


@app.command("rules")
def stations_rules(
    station: Annotated[str, typer.Argument(help="Station id.")],
    rules: Annotated[Path, typer.Argument(help="Rules YAML.")],
) -> None:
    """Give a station a new rules version from a YAML file."""
    from inspection.rules import StationRules
    from inspection.store.records import RecordStore

    parsed = StationRules.parse(_read(rules), source=str(rules))
    _check_classes(parsed)
    updated = RecordStore(open_db()).set_rules(station, parsed)
    typer.echo(f"station {updated.id} now uses rules v{updated.rules_version}")


@app.command("reference")
def stations_reference(
    station: Annotated[str, typer.Argument(help="Station id.")],
    image: Annotated[Path, typer.Argument(help="The golden part as the station's camera sees it (JPEG, PNG, BMP).")],
) -> None:
    """Register a station's reference image (a new version): a reference model judges each
    frame against it, aligned; each inspection records the version. A new part's good-only
    model is built from it: qc goodonly build --station STATION --good FOLDER."""
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
    reference = StationReferences(open_db()).set(station, image_sha256=sha, image_format=header.format,
                                             image_wh=(header.width, header.height), created_by="cli")
    typer.echo(f"station {station} now judges against reference v{reference.version} "
               f"({header.width}x{header.height}, sha256 {sha[:12]})")


@app.command("profile")
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
    saved = ProductStore(open_db()).set_profile(station, product, parsed)
    typer.echo(f"product {saved.name} at station {saved.station_id} now uses profile v{saved.version}")


@app.command("list")
def stations_list(
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON (with each station's rules).")] = False,
) -> None:
    """Stations with their current rules version."""
    from inspection.store.records import RecordStore

    stations = RecordStore(open_db()).stations()
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
