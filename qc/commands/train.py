"""`qc train` and `qc export`: recipe to weights, weights to ONNX. Imports torch and
Ultralytics only when these commands run."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer


def train(
    recipe: Annotated[Path | None, typer.Option(help="Training recipe YAML (see recipes/).")] = None,
    data: Annotated[str | None, typer.Option(help="Dataset version name@v or a YOLO data.yaml.")] = None,
    model: Annotated[
        str | None, typer.Option(help="Model YAML (yolo26n.yaml, yolo11n.yaml, yolov8n.yaml) or a .pt to fine-tune.")
    ] = None,
    epochs: Annotated[int | None, typer.Option(help="Epochs.", min=1)] = None,
    imgsz: Annotated[int | None, typer.Option(help="Training image size.", min=32)] = None,
    batch: Annotated[int | None, typer.Option(help="Batch size.", min=1)] = None,
    name: Annotated[str | None, typer.Option(help="Run name (the run folder starts with it).")] = None,
    device: Annotated[str | None, typer.Option(help="auto (GPU when present), cpu, or a CUDA index.")] = None,
    seed: Annotated[int | None, typer.Option(help="Random seed.")] = None,
    fraction: Annotated[float | None, typer.Option(help="Train on this fraction of the images.")] = None,
    time_hours: Annotated[float | None, typer.Option(help="Stop after this many hours.")] = None,
    resume: Annotated[Path | None, typer.Option(help="Continue an interrupted run folder.")] = None,
    good_only: Annotated[
        bool, typer.Option("--good-only", help="Train from good frames and their golden part alone: synthetic "
                           "defects made on them, one class `anomaly` (the recipe's good_only: options, "
                           "or the defaults).")
    ] = False,
) -> None:
    """Train a detector offline from a recipe; options given here override the recipe.

    Prints the run folder, which holds the recipe, the dataset version and the metrics.
    """
    from training.recipe import Recipe, reference_defaults
    from training.trainer import train as run_training

    # A good-only model judges against the golden part: without a recipe it starts from
    # settings that keep the frame and reference planes apart.
    base = Recipe.load(recipe) if recipe else Recipe.model_validate(reference_defaults() if good_only else {})
    given = {"data": data, "model": model, "epochs": epochs, "imgsz": imgsz, "batch": batch,
             "name": name, "device": device, "seed": seed, "fraction": fraction, "time_hours": time_hours}
    overrides = {key: value for key, value in given.items() if value is not None}
    if good_only and base.good_only is None:
        overrides["good_only"] = True
    options = " ".join(f"--{key.replace('_', '-')}" for key in overrides)
    # Checked as the recipe file is: a bad --fraction is a ConfigError, not a traceback.
    chosen = Recipe.checked({**base.model_dump(), **overrides},
                            source=f"{recipe or 'the default recipe'} with {options or 'no options'}")
    run = run_training(chosen, resume=resume)
    typer.echo(json.dumps({"run": str(run.folder), "weights": str(run.best_weights), **run.metrics}))


# The int8 model is served when it loses at most this much mAP50-95 against fp32 in the export
# check (issue 12: "within 1 point"); int8 ran 21 against 34 ms per 640 frame here
# (../shared/MEASURED.md).
INT8_TOLERANCE = 0.01


def serving_choice(serve: str, paths: dict, report: dict | None) -> tuple[str, str]:
    """(variant to register, why) for `qc export --register --serve`."""
    from inspection.errors import ConfigError

    if serve not in ("auto", "fp32", "fp16", "int8"):
        raise ConfigError(f"--serve {serve!r}: use auto, fp32, fp16 or int8")
    if serve != "auto":
        if serve not in paths:
            raise ConfigError(f"--serve {serve}: that variant was not exported; add --{serve}")
        return serve, "chosen with --serve"
    if "int8" not in paths:
        return "fp32", "no int8 export (add --int8 to consider it)"
    if report is None or "int8" not in report:
        return "fp32", "the int8 export was not checked (no --check data)"
    fp32, int8 = report["fp32"]["map50_95"], report["int8"]["map50_95"]
    if fp32 - int8 <= INT8_TOLERANCE:
        return "int8", f"int8 mAP50-95 {int8:.4f} is within {INT8_TOLERANCE} of fp32's {fp32:.4f}"
    return "fp32", f"int8 mAP50-95 {int8:.4f} falls more than {INT8_TOLERANCE} below fp32's {fp32:.4f}"


def export(
    source: Annotated[Path, typer.Argument(help="A run folder (from qc train) or a .pt weights file.")],
    out_dir: Annotated[Path | None, typer.Option(help="Folder for the ONNX files (default: RUN/export).")] = None,
    imgsz: Annotated[
        str | None,
        typer.Option(help="Input size N, or HEIGHT,WIDTH for frames of another aspect, e.g. 544,640 for "
                     "2448x2048 cameras (default: the recipe's export size)."),
    ] = None,
    fp16: Annotated[bool, typer.Option(help="Also write an fp16 variant.")] = False,
    int8: Annotated[bool, typer.Option(help="Also write an int8 variant (calibrated on val images).")] = False,
    end2end: Annotated[bool, typer.Option(help="Export the NMS-free head [B, 300, 6] (YOLO26).")] = False,
    dynamic: Annotated[
        bool, typer.Option(help="Dynamic batch and size (GPU batching); static is faster on CPU.")
    ] = False,
    data: Annotated[str | None, typer.Option(help="data.yaml for int8 calibration (default: the run's).")] = None,
    check: Annotated[
        bool, typer.Option(help="Score every variant against the torch model on the val images.")
    ] = True,
    register: Annotated[str | None, typer.Option(help="Add the fp32 model to the registry under this name.")] = None,
    promote: Annotated[bool, typer.Option(help="With --register: promote it through the gate.")] = False,
    serve: Annotated[
        str,
        typer.Option(help="Which variant --register adds: auto (int8 when --int8 was checked within 0.01 "
                     "mAP50-95 of fp32: about 1.6x faster on CPU; else fp32), fp32, fp16 or int8."),
    ] = "auto",
) -> None:
    """Export trained weights to ONNX with class names, imgsz and the training data's hash.

    With --check (the default when the data is known) each variant's mAP change against the
    torch model is measured and written into its metadata, and so into its registry card.
    """
    from inspection.errors import ConfigError
    from training.export import export_onnx, stamp_metadata
    from training.trainer import Run

    size: int | tuple[int, int] | None = None
    if imgsz:
        try:
            parts = [int(v) for v in imgsz.split(",")]
        except ValueError as error:
            raise ConfigError(f"--imgsz {imgsz!r}: give N or HEIGHT,WIDTH, e.g. 640 or 544,640") from error
        size = parts[0] if len(parts) == 1 else (parts[0], parts[1])

    if source.is_dir():
        run = Run.open(source)
        weights = run.best_weights
        lineage = run.lineage
        data_yaml = data or run.data["yaml"]
        size = size or run.recipe.export_imgsz or run.recipe.imgsz
        out_dir = out_dir or source / "export"
    else:
        weights, lineage, data_yaml = source, {"data_hash": None}, data
        out_dir = out_dir or source.parent
    variants = ["fp32"] + (["fp16"] if fp16 else []) + (["int8"] if int8 else [])
    paths = {
        precision: export_onnx(weights, out_dir=out_dir, imgsz=size, precision=precision,
                               end2end=end2end, dynamic=dynamic, data_yaml=data_yaml, lineage=lineage)
        for precision in variants
    }
    report = None
    if check and data_yaml:
        from training.export_check import check_exports

        report = check_exports(weights, paths, data=str(data_yaml), imgsz=size or 640)
        (out_dir / "export-check.json").write_text(json.dumps(report, indent=2))
        for precision, path in paths.items():
            stamp_metadata(path, {"export_check": {"torch": report["torch"], precision: report[precision]}})
        typer.echo(json.dumps(report), err=True)
    for path in paths.values():
        typer.echo(str(path))
    if register:
        from qc.commands.models import register as register_model

        chosen, reason = serving_choice(serve, paths, report)
        stamp_metadata(paths[chosen], {"serving_choice": {"precision": chosen, "reason": reason}})
        typer.echo(f"registering the {chosen} model: {reason}", err=True)
        register_model(paths[chosen], name=register, weights=weights, promote=promote, err=True)
    elif promote:
        raise ConfigError("--promote needs --register NAME (the registry name to promote under)")
