"""`qc eval`: score an ONNX model on labelled images, the way the line would run it.

Example::

    qc eval --model candidate.onnx --data ../shared/datasets/deeppcb/data.yaml
    qc eval --model candidate.onnx --data deeppcb@v3 --split test --json > candidate.json
    qc eval --model candidate.onnx --data deeppcb@v3 --report reports/candidate --criterion deeppcb

Images are decoded by `inspection.detect.imaging.read_file` and run through `Detector.predict`, one
image at a time, exactly as production runs the model; no Ultralytics or torch is involved,
so an fp16 or int8 export is scored as itself. mAP is computed by COCOeval (faster-coco-eval,
held equal to pycocotools by the tests; `inspection.evaluate.metrics`); `--report` also needs
matplotlib (the `train` extra).
"""

from __future__ import annotations

import importlib.util
import json
from enum import StrEnum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from qc.commands._options import Providers, provider_list

if TYPE_CHECKING:
    from inspection.evaluate.metrics import Evaluation


class Criterion(StrEnum):
    coco = "coco"
    deeppcb = "deeppcb"


def evaluate(
    model: Annotated[Path, typer.Option("--model", "-m", help="ONNX detection model to score, or a good-only "
                                        "model (.qcgood; scored class-agnostic: any truth box is an anomaly).")],
    data: Annotated[
        str,
        typer.Option(
            "--data",
            help="Labelled images: a YOLO data.yaml (or its folder), or a dataset version "
            "NAME@VERSION (NAME@latest, NAME) from `qc dataset`.",
        ),
    ],
    split: Annotated[
        str, typer.Option(help="Which split to score: val, test or train.")
    ] = "val",
    conf: Annotated[
        float,
        typer.Option(
            help="Deploy confidence threshold, as the line runs: precision, recall, F1, the "
            "confusion matrix and the gallery use boxes at or above it (mAP uses all).",
            min=0,
            max=1,
        ),
    ] = 0.25,
    json_output: Annotated[
        bool, typer.Option("--json", help="Print only the metrics as one JSON object on stdout.")
    ] = False,
    report: Annotated[
        Path | None,
        typer.Option(
            help="Folder for report.html (self-contained) and its PNGs: PR curves, confusion "
            "matrix, per-class scores, false positives and misses."
        ),
    ] = None,
    criterion: Annotated[
        Criterion,
        typer.Option(
            help="coco: mAP50 and mAP50-95 only. deeppcb: also the DeepPCB paper's precision, "
            "recall and F-score (a box is right above IoU 0.33 with a truth of its class)."
        ),
    ] = Criterion.coco,
    providers: Providers = None,
    tile: Annotated[
        int | None,
        typer.Option(help="Judge each image in tiles of this many pixels (as a station with tiling does).",
                     min=32),
    ] = None,
    tile_overlap: Annotated[int, typer.Option(help="Pixels shared by neighbouring tiles.", min=0)] = 64,
) -> None:
    """Score a model on labelled images: COCO mAP50 and mAP50-95 (COCOeval), and
    per-class precision, recall and F1 at the deploy threshold."""
    from inspection.detect.goodonly import is_goodonly_file
    from inspection.errors import ConfigError
    from inspection.evaluate.scoring import score_goodonly, score_onnx, warn

    if report is not None and importlib.util.find_spec("matplotlib") is None:
        # Checked before scoring: the split is not scored only to fail at the plots.
        raise ConfigError("--report needs matplotlib: pip install 'qc[train]' (or leave out --report)")
    chosen = provider_list(providers)
    tiling = None
    if tile is not None:
        from inspection.detect.tiling import Tiling

        tiling = Tiling(size=tile, overlap=tile_overlap)
    if is_goodonly_file(model):
        scored = score_goodonly(model, data, split=split, deploy_conf=conf, criterion=criterion.value)
    else:
        scored = score_onnx(model, data, split=split, deploy_conf=conf, criterion=criterion.value,
                            providers=chosen, tiling=tiling)
    warn(skipped=scored.skipped, unlabelled=scored.unlabelled)
    result, paths = scored.evaluation, scored.paths
    page = None
    if report is not None:
        from training.report import write_report

        page = write_report(
            result,
            report,
            image_paths=paths,
            details={"model": str(model), "data": f"{data} ({split})"},
        )
    if json_output:
        typer.echo(json.dumps(result.to_json(), indent=2))
        return
    typer.echo(_table(result, model=model, data=data, split=split))
    if page is not None:
        typer.echo(f"\nreport: {page}")


# -- the readable table ----------------------------------------------------------------------


def _table(result: Evaluation, *, model: Path, data: str, split: str) -> str:
    def cell(value: float | None) -> str:
        return "-" if value is None else f"{value:.3f}"

    width = max([5, *(len(m.name) for m in result.per_class.values())])
    conf = f"{result.deploy_conf:g}"
    lines = [
        f"model {model}",
        f"data  {data} ({split}): {result.images} images, {result.instances} boxes",
        "",
        f"mAP50 {result.map50:.4f}   mAP50-95 {result.map50_95:.4f}   (COCOeval)",
        (f"at conf >= {conf}: precision {result.precision:.3f}   recall {result.recall:.3f}   "
        f"F1 {result.f1:.3f}   false positives {len(result.false_positives)}   "
        f"misses {len(result.misses)}"),
    ]
    if result.deeppcb is not None:
        d = result.deeppcb
        lines.append(
            f"DeepPCB (IoU > {d.iou:g}, conf >= {conf}): precision {d.precision:.3f}   "
            f"recall {d.recall:.3f}   F-score {d.fscore:.3f}"
        )
    header = (
        f"{'class':<{width}}  {'boxes':>6}  {'AP50':>6}  {'AP50-95':>7}  "
        f"{'P':>6}  {'R':>6}  {'F1':>6}  {'FP':>5}  {'miss':>5}"
    )
    lines += ["", header, "-" * len(header)]
    for _, m in sorted(result.per_class.items()):
        lines.append(
            f"{m.name:<{width}}  {m.support:>6}  {cell(m.ap50):>6}  {cell(m.ap50_95):>7}  "
            f"{cell(m.precision):>6}  {cell(m.recall):>6}  {cell(m.f1):>6}  {m.fp:>5}  {m.fn:>5}"
        )
    return "\n".join(lines)
