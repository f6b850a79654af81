"""`qc goodonly`: a model of a new part from its golden image and good frames, no defect label.

Example::

    qc goodonly build --golden golden.png --good good-frames/ --out part.qcgood --false-alarms 0.1
    qc goodonly build --station line9 --good good-frames/ --out part9.qcgood --register part9 --promote
    qc predict --model part.qcgood frames/ --save judged/    # boxes + anomaly map drawn
    qc eval --model part.qcgood --data station@v1 --criterion deeppcb   # class-agnostic

What it builds and how it chooses its threshold: inspection/detect/goodonly.py, docs/goodonly.md.
`--station` takes the golden part the station registered (`qc stations reference`), so the
model and the station judge against the same image; `--register NAME` adds the model to the
registry as the next version of NAME (`--promote`: and promotes it) for the service to serve.
`qc predict` and `qc eval` take a `.qcgood` file wherever they take an ONNX model.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Annotated, Any

import typer

app = typer.Typer(help="Good-only models: judge a new part from its golden image and good frames alone.",
                  no_args_is_help=True)


@app.command("build")
def build(
    good: Annotated[
        list[str],
        typer.Option("--good", help="Good frames of the same station: files, folders (searched recursively) or "
                     "glob patterns; repeat the option for several. 50 is a good start."),
    ],
    out: Annotated[Path, typer.Option("--out", help=f"The model file to write (suffix {'.qcgood'}).")],
    false_alarms: Annotated[
        float, typer.Option("--false-alarms", min=0, help="Boxes per good frame allowed on the held-out good frames: "
                            "the threshold is the lowest that keeps to it.")
    ] = 0.1,
    k: Annotated[float, typer.Option("--k", min=0.1, help="The band of good is mean +- k x spread.")] = 3.0,
    edge_tolerance: Annotated[
        int, typer.Option("--edge-tolerance", min=0, max=16,
                          help="Pixels an edge may move between a good frame and the golden.")
    ] = 1,
    min_area: Annotated[int, typer.Option("--min-area", min=1, help="The least box, in pixels.")] = 12,
    spread_floor: Annotated[
        float, typer.Option("--spread-floor", min=0, help="The least spread per pixel, in grey levels (sensor noise).")
    ] = 4.0,
    box_min_side: Annotated[
        int, typer.Option("--box-min-side", min=0,
                          help="Grow boxes to at least this many pixels a side (as your inspectors draw them); "
                          "overlapping grown boxes merge. 0: tight around the anomaly.")
    ] = 0,
    holdout: Annotated[
        float, typer.Option("--holdout", min=0.05, max=0.9,
                            help="Share of the good frames held out of the statistics to choose the threshold.")
    ] = 0.3,
    golden: Annotated[
        Path | None, typer.Option("--golden", help="The golden part's image, as the station's camera sees it.")
    ] = None,
    station: Annotated[
        str | None, typer.Option("--station", help="Take the golden part this station registered "
                                 "(qc stations reference STATION GOLDEN.png), instead of --golden.")
    ] = None,
    register: Annotated[
        str | None, typer.Option("--register", help="Add the model to the registry as the next version of this "
                                 "name (serve it with QC_MODEL_NAME=NAME).")
    ] = None,
    promote: Annotated[
        bool, typer.Option("--promote", help="With --register: promote it (through the gate) once added.")
    ] = False,
) -> None:
    """Build a good-only model; print what it holds as one JSON object."""
    from tqdm import tqdm

    from inspection.detect.goodonly import SUFFIX, GoodOnlyModel, Params
    from inspection.detect.imaging import read_file
    from inspection.errors import ConfigError, ImageError
    from qc.commands.predict import expand

    if out.suffix.lower() != SUFFIX:
        raise ConfigError(f"--out {out}: name the model file with the suffix {SUFFIX} "
                          f"(e.g. {out.with_suffix(SUFFIX)}), so qc predict and qc eval know it from an ONNX model")
    if out.exists() and out.is_dir():
        raise ConfigError(f"--out {out}: is a folder; name a file such as {out / ('part' + SUFFIX)}")
    params = Params(k=k, spread_floor=spread_floor, edge_tolerance=edge_tolerance, min_area=min_area,
                    false_alarms=false_alarms, holdout=holdout, box_min_side=box_min_side)
    params.check()
    if (golden is None) == (station is None):
        raise ConfigError("name the golden part once: --golden GOLDEN.png, or --station STATION for the golden "
                          "it registered with qc stations reference")
    if promote and not register:
        raise ConfigError("--promote needs --register NAME (the registry name the service serves)")
    if golden is None:
        assert station is not None
        golden_name, golden_pixels = _station_golden(station)
    else:
        golden_name, golden_pixels = str(golden), read_file(golden)  # an unreadable golden stops here, named
    found, missing = expand(good)
    if missing:
        raise ConfigError(f"--good {', '.join(missing)}: no such file, folder or matching pattern")
    paths = [item.path for item in found if golden is None or item.path.resolve() != golden.resolve()]
    if not paths:
        raise ConfigError(f"--good {', '.join(good)}: no image files (.jpg, .png, .bmp) found; "
                          "point it at the station's good frames")
    frames = []
    for path in tqdm(paths, desc="read good frames", unit="frame", file=sys.stderr):
        try:
            frames.append(read_file(path))
        except ImageError as error:
            raise ImageError(f"{error}; remove it from the good frames or replace it") from None
    model = GoodOnlyModel.build(
        golden_pixels, frames, params=params, names=[str(p) for p in paths],
        progress=lambda items: tqdm(items, desc="align good frames", unit="frame", file=sys.stderr))
    model.info["golden"] = golden_name
    model.save(out)
    typer.echo(json.dumps({"model": str(out), "threshold": model.threshold, **model.info,
                           "params": model.header()["params"]}, indent=2))
    if model.info.get("left_out"):
        print(f"warning: {len(model.info['left_out'])} good frame(s) did not align with the golden and were "
              "left out: " + ", ".join(model.info["left_out"][:5]), file=sys.stderr)
    if register:
        from qc.commands.models import register as add_to_registry

        add_to_registry(out, name=register, promote=promote, err=True)


def _station_golden(station: str) -> tuple[str, Any]:
    """(a name for it, its pixels): the station's current reference image, from the database
    and image store of QC_HOME (QC_DATABASE_URL), as the service reads it."""
    from inspection.detect import imaging
    from inspection.errors import NotFound
    from inspection.settings import Settings
    from inspection.store.image_stores import open_image_store
    from inspection.store.references import StationReferences
    from qc.commands.db import open_db

    reference = StationReferences(open_db()).current(station)
    if reference is None:
        raise NotFound(f"station {station} has no reference image; register the golden part with "
                       f"qc stations reference {station} GOLDEN.png, or pass --golden GOLDEN.png")
    data = open_image_store(Settings()).read(reference.image_sha256, reference.image_format)
    return f"station {station} reference v{reference.version}", imaging.decode(data)


def predict_goodonly(model_path: Path, paths: list[str], *, save: Path | None) -> None:
    """`qc predict --model PART.qcgood`: one JSON line per image, with the image's anomaly score
    and alignment; with --save, each frame with its anomaly map and boxes drawn."""
    import cv2

    from inspection.detect.goodonly import GoodOnlyModel, overlay
    from inspection.detect.imaging import read_file
    from inspection.errors import ImageError
    from qc.commands.predict import inputs

    model = GoodOnlyModel.load(model_path)
    found, names, failed = inputs(paths, save=save is not None)
    for path, _ in found:
        try:
            frame = read_file(path)
            judged = model.predict(frame)
        except ImageError as error:
            print(f"{path}: {error}", file=sys.stderr)
            failed = True
            continue
        height, width = frame.shape[:2]
        print(json.dumps({"image": str(path), "width": width, "height": height,
                          "anomaly_score": round(judged.score, 4),
                          "alignment": {"score": round(judged.alignment, 4),
                                        "shift": [round(judged.shift[0], 2), round(judged.shift[1], 2)]},
                          "detections": judged.detections.to_records()}), flush=True)
        if save:
            target = save / names[path.resolve()]
            target.parent.mkdir(parents=True, exist_ok=True)
            cv2.imwrite(str(target), overlay(frame, judged, threshold=model.threshold))
    if save:
        print(f"annotated images in {save}", file=sys.stderr)
    raise typer.Exit(1 if failed else 0)
