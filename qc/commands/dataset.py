"""`qc dataset ...`: import labelled data as immutable versions, inspect, compare, export.

Example::

    qc dataset import export.json --format labelstudio --name bottles --images ~/ls/media
    qc dataset list
    qc dataset stats bottles@v2 --plot bottles-v2.png
    qc dataset diff bottles@v1 bottles@v2
    qc dataset export bottles@v2 --format coco --out /tmp/bottles-coco

Versions live under $QC_HOME/datasets/<name>/<version>/ (see inspection.data.versions).
"""

from __future__ import annotations

import json
from enum import StrEnum
from pathlib import Path
from typing import Annotated

import typer

app = typer.Typer(
    help="Versioned datasets: import labelled images, inspect, compare and export versions.",
    no_args_is_help=True,
)

_SHOWN = 20  # problems listed per section before "... and N more"


class ImportFormat(StrEnum):
    yolo = "yolo"
    coco = "coco"
    voc = "voc"
    labelstudio = "labelstudio"


@app.command("import")
def import_(
    source: Annotated[
        Path,
        typer.Argument(
            help="The data: a YOLO folder or its data.yaml, a COCO JSON or its folder, a VOC "
            "folder, or a Label Studio JSON export."
        ),
    ],
    format: Annotated[ImportFormat, typer.Option("--format", "-f", help="Format of SOURCE.")],
    name: Annotated[
        str, typer.Option("--name", "-n", help="Dataset name (letters, digits, '.', '_', '-').")
    ],
    version: Annotated[
        str | None,
        typer.Option(help="Version name; default: the next v1, v2, ... Existing ones are refused."),
    ] = None,
    images: Annotated[
        Path | None,
        typer.Option(
            help="Folder the annotations' image paths are relative to (coco, voc, labelstudio): "
            "for Label Studio, its media folder or local-files document root. Default: beside "
            "the annotations."
        ),
    ] = None,
    classes: Annotated[
        str | None,
        typer.Option(
            help="Class names in id order, comma-separated. voc and labelstudio: fixes the ids "
            "(default: the previous version's, then new names sorted); yolo: used only "
            "without data.yaml or classes.txt."
        ),
    ] = None,
    unlabelled_as_background: Annotated[
        bool,
        typer.Option(
            help="yolo, voc: read an image without a label file as showing no defect, instead "
            "of reporting it and leaving it out."
        ),
    ] = False,
    voc_one_based: Annotated[
        bool,
        typer.Option(
            help="voc: coordinates count from 1 with inclusive xmax, as in the original VOC "
            "devkit (default: pixel corners, as LabelImg, CVAT and Label Studio write)."
        ),
    ] = False,
    image_key: Annotated[
        str | None,
        typer.Option(help="labelstudio: the task.data key holding the image (default: image)."),
    ] = None,
    test_fraction: Annotated[
        float,
        typer.Option(
            help="Share of images in the frozen test split (chosen by content hash).",
            min=0,
            max=0.9,
        ),
    ] = 0.1,
    val_fraction: Annotated[
        float,
        typer.Option(
            help="Share of images in the val split (chosen by content hash).", min=0, max=0.9
        ),
    ] = 0.15,
    references: Annotated[
        Path | None,
        typer.Option(
            help="Folder of each image's golden (defect-free) part, named as the image: stored "
            "with it for reference recipes. yolo finds a references/ or templates/ folder beside "
            "images/ by itself."
        ),
    ] = None,
    quiet: Annotated[bool, typer.Option(help="No progress bar.")] = False,
) -> None:
    """Import SOURCE as a new, read-only version of dataset NAME.

    Files that cannot be imported (a missing label, an unknown class, a corrupt image, ...)
    are listed by name and recorded in the manifest; the other images are imported.
    """
    from inspection.data.versions import import_dataset

    version_ = import_dataset(
        source,
        format=format.value,
        name=name,
        version=version,
        images=images,
        names=[c.strip() for c in classes.split(",") if c.strip()] if classes else None,
        allow_missing_labels=unlabelled_as_background,
        voc_one_based=voc_one_based,
        image_key=image_key,
        test_fraction=test_fraction,
        val_fraction=val_fraction,
        progress=not quiet,
        references=references,
    )
    counts = version_.manifest["counts"]
    by_split = ", ".join(f"{s} {n}" for s, n in counts["images_by_split"].items())
    typer.echo(
        f"{version_.ref}: {counts['images']} images ({by_split}), {counts['boxes']} boxes, "
        f"{len(version_.names)} classes -> {version_.path}"
    )
    problems = version_.problems
    if problems:
        skipped = sum(p.skipped for p in problems)
        typer.echo(
            f"{len(problems)} problems ({skipped} files left out); they are in manifest.json:",
            err=True,
        )
        _echo_list([str(p) for p in problems], err=True, rest="all are in manifest.json")


@app.command("list")
def list_(
    name: Annotated[str | None, typer.Argument(help="Only this dataset's versions.")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print JSON instead of a table.")] = False,
) -> None:
    """List stored versions: name@version, created, images, boxes, classes, content hash."""
    from inspection.data.versions import list_versions

    versions = list_versions(name)
    rows = [
        {
            "ref": v.ref,
            "created": v.created[:19],
            "images": v.manifest["counts"]["images"],
            "boxes": v.manifest["counts"]["boxes"],
            "classes": len(v.names),
            "problems": v.manifest["counts"]["problems"],
            "content_hash": v.content_hash,
            "path": str(v.path),
        }
        for v in versions
    ]
    if as_json:
        typer.echo(json.dumps(rows, indent=2))
        return
    if not rows:
        others = [v.ref for v in list_versions(None)] if name else []
        if others:
            typer.echo(f"no dataset named {name}; stored: {', '.join(sorted({r.split('@')[0] for r in others}))}",
                       err=True)
        else:
            typer.echo("no datasets yet; import one with `qc dataset import`", err=True)
        return
    typer.echo(f"{'dataset':<28} {'created':<25} {'images':>7} {'boxes':>7} {'classes':>7}  hash")
    for row in rows:
        typer.echo(
            f"{row['ref']:<28} {row['created']:<25} {row['images']:>7} {row['boxes']:>7} "
            f"{row['classes']:>7}  {row['content_hash'][:12]}"
        )


@app.command("stats")
def stats(
    ref: Annotated[str, typer.Argument(help="NAME, NAME@VERSION or NAME@latest.")],
    plot: Annotated[
        Path | None, typer.Option(help="Also draw class counts and box sizes into this PNG.")
    ] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print everything as JSON.")] = False,
) -> None:
    """Class counts per split, box sizes, unlabelled and duplicate images, label errors."""
    from inspection.data.stats import dataset_stats, plot_stats
    from inspection.data.versions import open_version

    result = dataset_stats(open_version(ref))
    if plot is not None:
        plot_stats(result, plot)
    if as_json:
        typer.echo(json.dumps(result.to_dict(), indent=2))
        return
    splits = ", ".join(f"{s} {n}" for s, n in result.images_by_split.items())
    typer.echo(f"{result.ref} (content {result.content_hash[:12]})")
    typer.echo(f"{result.images} images ({splits}), {result.boxes} boxes")
    typer.echo("")
    typer.echo(f"{'class':<24} {'train':>7} {'val':>7} {'test':>7} {'total':>7}")
    for name, total in result.class_counts.items():
        per = [result.class_counts_by_split[s][name] for s in ("train", "val", "test")]
        typer.echo(f"{name:<24} {per[0]:>7} {per[1]:>7} {per[2]:>7} {total:>7}")
    typer.echo("")
    typer.echo(
        "box size (px): "
        + ", ".join(
            f"{label} {count}" for label, count in zip(result.box_size_bins, result.box_size_counts, strict=True)
        )
    )
    sections = [
        ("unlabelled images (no boxes)", result.unlabelled),
        ("duplicate images", [str(p) for p in result.duplicates]),
        ("label errors", [str(p) for p in result.label_errors]),
        ("other import problems", [str(p) for p in result.other_problems]),
    ]
    for title, lines in sections:
        typer.echo(f"\n{title}: {len(lines)}")
        _echo_list(lines)
    if plot is not None:
        typer.echo(f"\nplot: {plot}")


@app.command("diff")
def diff(
    a: Annotated[str, typer.Argument(help="The older version, e.g. bottles@v1.")],
    b: Annotated[str, typer.Argument(help="The newer version, e.g. bottles@v2.")],
    as_json: Annotated[bool, typer.Option("--json", help="Print everything as JSON.")] = False,
) -> None:
    """Images added, removed or relabelled from A to B, and class count changes."""
    from inspection.data.stats import diff_versions
    from inspection.data.versions import open_version

    change = diff_versions(open_version(a), open_version(b))
    if as_json:
        typer.echo(json.dumps(change.to_dict(), indent=2))
        return
    typer.echo(
        f"{change.a} -> {change.b}: {len(change.added)} added, {len(change.removed)} removed, "
        f"{len(change.relabelled)} relabelled, {len(change.split_changed)} in another split, "
        f"{change.unchanged} unchanged"
    )
    typer.echo(f"\n{'class':<24} {'before':>7} {'after':>7} {'change':>7}")
    for name, (before, after) in change.class_counts.items():
        typer.echo(f"{name:<24} {before:>7} {after:>7} {after - before:>+7}")
    for title, lines in (
        ("added", change.added),
        ("removed", change.removed),
        ("relabelled", change.relabelled),
        ("in another split", change.split_changed),
    ):
        if lines:
            typer.echo(f"\n{title}: {len(lines)}")
            _echo_list(lines)


@app.command("export")
def export(
    ref: Annotated[str, typer.Argument(help="NAME, NAME@VERSION or NAME@latest.")],
    format: Annotated[ImportFormat, typer.Option("--format", "-f", help="Format to write.")],
    out: Annotated[Path, typer.Option(help="A new or empty folder to write into.")],
) -> None:
    """Write a version in another format, with its splits, for other tools."""
    from inspection.data.versions import export_version, open_version

    version = open_version(ref)
    written = export_version(version, format=format.value, out=out)
    typer.echo(f"{version.ref} -> {written}")


def _echo_list(lines: list[str], *, err: bool = False, rest: str = "--json lists all") -> None:
    for line in lines[:_SHOWN]:
        typer.echo(f"  {line}", err=err)
    if len(lines) > _SHOWN:
        typer.echo(f"  ... and {len(lines) - _SHOWN} more ({rest})", err=err)
