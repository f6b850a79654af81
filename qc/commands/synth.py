"""`qc synth`: write a synthetic YOLO defect dataset, for demos, tests and a first model.

Example::

    qc synth --out data/synth --n 200 --seed 0
    qc synth --out data/wide --n 50 --width 800 --height 600 --surface pcb
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer


def synth(
    out: Annotated[
        Path,
        typer.Option("--out", help="Folder to write into: images/, labels/ and data.yaml."),
    ],
    n: Annotated[int, typer.Option("--n", min=1, help="How many images to make.")] = 200,
    seed: Annotated[
        int,
        typer.Option(
            "--seed",
            min=0,
            help="Random seed. The same seed gives byte-identical files, and image i depends "
            "only on (seed, i): --n 10 writes the first 10 images of --n 20.",
        ),
    ] = 0,
    width: Annotated[int, typer.Option("--width", min=64, help="Image width in pixels.")] = 640,
    height: Annotated[
        int, typer.Option("--height", min=64, help="Image height in pixels.")
    ] = 640,
    val_fraction: Annotated[
        float,
        typer.Option(
            "--val-fraction",
            min=0.0,
            max=0.9,
            help="Share of images put in the validation split (every 1/fraction-th image).",
        ),
    ] = 0.2,
    surface: Annotated[
        str | None,
        typer.Option(
            "--surface",
            help="Draw only this surface: metal, pcb or foil. Default: a random one per image.",
        ),
    ] = None,
    image_format: Annotated[
        str, typer.Option("--format", help="Image file format: jpg or png.")
    ] = "jpg",
    overwrite: Annotated[
        bool,
        typer.Option(
            "--overwrite",
            help="Replace images/, labels/ and data.yaml if OUT already has them "
            "(nothing else in OUT is touched).",
        ),
    ] = False,
    progress: Annotated[
        bool, typer.Option("--progress/--quiet", help="Show a progress bar.")
    ] = True,
    defects: Annotated[
        str | None,
        typer.Option(
            "--defects",
            help="Defects per defective part as MIN-MAX (e.g. 4-8; at most 12). Default: 1 to 4, "
            "mostly 1. Denser parts train a detector faster.",
        ),
    ] = None,
    references: Annotated[
        bool,
        typer.Option(
            "--references",
            help="Also write each part without its defects to references/ (the golden part a "
            "reference recipe trains against).",
        ),
    ] = False,
    part: Annotated[
        int | None,
        typer.Option(
            "--part", min=0,
            help="Draw every image of this one part design under one light (a line's product), "
            "each with its own defects and noise: frames for a station judged against one golden part.",
        ),
    ] = None,
) -> None:
    """Make a synthetic defect dataset in YOLO format.

    Surfaces: brushed metal, PCB, battery electrode foil, under varied light.
    Classes: 0 scratch, 1 dent, 2 crack, 3 particle, 4 missing.
    About one image in six is a good part (no defects, empty label file).
    Each box is the tight box of the pixels its defect changed.
    """
    # Imported here so that `qc --help` does not pay for OpenCV.
    from inspection.data.synth import write_dataset
    from inspection.errors import ConfigError

    counts_range = None
    if defects is not None:
        low, _, high = defects.partition("-")
        try:
            counts_range = (int(low), int(high or low))
        except ValueError as error:
            raise ConfigError(f"--defects {defects!r}: write MIN-MAX, e.g. 4-8") from error

    summary = write_dataset(
        out,
        n=n,
        seed=seed,
        width=width,
        height=height,
        val_fraction=val_fraction,
        surface=surface,
        image_format=image_format,
        overwrite=overwrite,
        progress=progress,
        defects=counts_range,
        references=references,
        part=part,
    )
    counts = ", ".join(f"{name} {count}" for name, count in summary.boxes.items())
    typer.echo(
        f"wrote {n} images ({summary.images['train']} train, {summary.images['val']} val; "
        f"{summary.good} good parts) with {sum(summary.boxes.values())} boxes: {counts}"
    )
    typer.echo(f"dataset: {summary.data_yaml}")
