"""`qc eval`: score an ONNX model on labelled images, the way the line would run it.

Example::

    qc eval --model candidate.onnx --data ../shared/datasets/deeppcb/data.yaml
    qc eval --model candidate.onnx --data deeppcb@v3 --split test --json > candidate.json
    qc eval --model candidate.onnx --data deeppcb@v3 --report reports/candidate --criterion deeppcb

Images are decoded by `inspection.imaging.read_file` and run through `Detector.predict`, one
image at a time, exactly as production runs the model; no Ultralytics or torch is involved,
so an fp16 or int8 export is scored as itself. mAP is computed by pycocotools
(`inspection.evaluation`); `--report` also needs matplotlib (the `train` extra).
"""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass
from enum import Enum
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

if TYPE_CHECKING:
    from inspection.detections import Detections
    from inspection.evaluation import Evaluation

# Ultralytics validates at conf 0.001: mAP ranks every box the model gives, so the model
# must not cut them at the deploy threshold first. 0.7 and 300 are its NMS defaults too.
_RANKING_CONF = 0.001
_NMS_IOU = 0.7
_MAX_DET = 300
# What `inspection.imaging` decodes; other image files in a split folder are reported.
_IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp"}


class Criterion(str, Enum):
    coco = "coco"
    deeppcb = "deeppcb"


def evaluate(
    model: Annotated[Path, typer.Option("--model", "-m", help="ONNX detection model to score.")],
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
    providers: Annotated[
        str,
        typer.Option(help="Execution providers: auto (TensorRT, CUDA, CPU), or e.g. 'cuda,cpu'."),
    ] = "auto",
) -> None:
    """Score a model on labelled images: COCO mAP50 and mAP50-95 (pycocotools), and
    per-class precision, recall and F1 at the deploy threshold."""
    from tqdm import tqdm

    from inspection.detector import Detector
    from inspection.errors import DatasetError, ImageError
    from inspection.evaluation import evaluate as score
    from inspection.imaging import read_file
    from inspection.settings import Settings

    names, samples = _load_truths(data, split=split)
    if not samples:
        raise DatasetError(f"{data}: the {split} split has no images; pick another --split")
    settings = Settings()
    detector = Detector(
        model,
        providers=providers.split(",") if providers != "auto" else settings.provider_list(),
        conf=_RANKING_CONF,
        iou=_NMS_IOU,
        max_det=_MAX_DET,
        threads=settings.threads,
        cache_dir=settings.home / "trt-cache",
    )
    _check_classes(model=model, model_names=detector.names, data=data, data_names=names)

    predictions: list[Detections] = []
    truths: list[Detections] = []
    paths: list[Path] = []
    skipped: list[str] = []
    unlabelled = 0
    for sample in tqdm(samples, desc=f"eval {split}", unit="image", file=sys.stderr):
        try:
            pixels = read_file(sample.image)
        except ImageError as error:
            skipped.append(f"{error}; fix or delete it")
            continue
        height, width = pixels.shape[:2]
        truth = sample.truth
        if truth is None:
            truth, problem, missing = _yolo_truth(sample, names=names, image_size=(width, height))
            if truth is None:
                skipped.append(problem)
                continue
            unlabelled += missing
        # One image per call: minimal letterbox padding then depends on the image alone, as
        # for a frame on the line, not on which images share a batch.
        prediction = detector.predict([pixels])[0]
        predictions.append(prediction)
        truths.append(truth)
        paths.append(sample.image)

    _warn(skipped=skipped, unlabelled=unlabelled)
    if not truths:
        raise DatasetError(
            f"{data}: no {split} image could be read with its labels; fix the files named above"
        )
    result = score(
        predictions, truths, names=names, deploy_conf=conf, criterion=criterion.value
    )
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


# -- ground truth ----------------------------------------------------------------------------


@dataclass(frozen=True)
class _Sample:
    image: Path
    label: Path | None = None  # YOLO label file, parsed once the image's size is known
    truth: Detections | None = None  # already parsed (dataset versions)


def _load_truths(data: str, *, split: str) -> tuple[dict[int, str], list[_Sample]]:
    """Class names and the images of `split`, from a data.yaml or a dataset version."""
    path = Path(data)
    if data.endswith((".yaml", ".yml")) or path.exists():
        return _from_data_yaml(path, split=split)
    return _from_version(data, split=split)


def _from_version(reference: str, *, split: str) -> tuple[dict[int, str], list[_Sample]]:
    from inspection.dataset import open_version
    from inspection.errors import DatasetError
    from inspection.formats import SPLITS

    version = open_version(reference)
    samples = [
        _Sample(image=item.path, truth=item.detections) for item in version.images(split=split)
    ]
    if not samples:
        counts = {s: sum(e["split"] == s for e in version.entries) for s in SPLITS}
        have = ", ".join(f"{s} {n}" for s, n in counts.items())
        raise DatasetError(
            f"{version.ref} has no {split!r} images ({have}); pick another --split"
        )
    return version.names, samples


def _from_data_yaml(path: Path, *, split: str) -> tuple[dict[int, str], list[_Sample]]:
    import yaml

    from inspection.errors import DatasetError
    from inspection.formats.yolo import class_names_from_yaml, label_path_for

    if path.is_dir():
        path = path / "data.yaml"
    if not path.is_file():
        raise DatasetError(
            f"{path}: no such data.yaml; pass a YOLO data.yaml or a dataset version NAME@VERSION"
        )
    try:
        spec = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as error:
        raise DatasetError(f"{path}: cannot read it as YAML ({error}); fix the file") from error
    if not isinstance(spec, dict):
        raise DatasetError(f"{path}: expected a mapping with 'names:' and '{split}:'; fix the file")
    names = class_names_from_yaml(spec.get("names"), file=path)
    if not spec.get(split):
        present = ", ".join(s for s in ("train", "val", "test") if spec.get(s)) or "none"
        raise DatasetError(
            f"{path}: no '{split}:' entry (splits in the file: {present}); add "
            f"'{split}: images/{split}' or pick another --split"
        )
    # As training.data resolves it: `path:` relative to the data.yaml's folder, or that folder.
    root = Path(spec.get("path") or path.parent)
    if not root.is_absolute():
        root = path.parent / root
    entries = spec[split] if isinstance(spec[split], list) else [spec[split]]
    images: list[Path] = []
    for entry in entries:
        images += _split_images(root / str(entry), data_yaml=path, split=split)
    # Ultralytics' rule: the last `images` folder of the path becomes `labels`.
    samples = [
        _Sample(image=image, label=label_path_for(image, root=Path(image.anchor)))
        for image in (i.absolute() for i in images)
    ]
    return names, samples


def _split_images(location: Path, *, data_yaml: Path, split: str) -> list[Path]:
    from inspection.errors import DatasetError

    if location.is_dir():
        return sorted(
            p for p in location.rglob("*") if p.is_file() and p.suffix.lower() in _IMAGE_SUFFIXES
        )
    if location.is_file() and location.suffix == ".txt":  # Ultralytics' list of image files
        lines = [line.strip() for line in location.read_text(encoding="utf-8").splitlines()]
        return [
            (location.parent / line if not Path(line).is_absolute() else Path(line))
            for line in lines
            if line
        ]
    raise DatasetError(
        f"{data_yaml}: the {split} folder {location} does not exist; fix '{split}:' (it is "
        "relative to 'path:', or to the data.yaml's folder when there is no 'path:')"
    )


def _yolo_truth(
    sample: _Sample, *, names: dict[int, str], image_size: tuple[int, int]
) -> tuple[Detections | None, str, int]:
    """(truth, problem, 1 if the label file is missing) for one image of a YOLO folder.

    A missing label file reads as "no defects", as Ultralytics' validator reads it (counted
    and reported, so a folder without labels does not pass unnoticed); a bad one leaves the
    image out, as Ultralytics does.
    """
    from inspection.detections import Detections
    from inspection.formats.yolo import parse_labels

    if sample.label is None or not sample.label.is_file():
        return Detections.empty(names=names, image_size=image_size), "", 1
    detections, problems = parse_labels(
        sample.label.read_text(encoding="utf-8", errors="replace"),
        image_size=image_size,
        names=names,
        file=str(sample.label),
        image=str(sample.image),
    )
    if detections is None:
        return None, str(problems[0]), 0
    return detections, "", 0


def _warn(*, skipped: list[str], unlabelled: int) -> None:
    if unlabelled:
        print(
            f"warning: {unlabelled} image(s) have no label file and were scored as defect-free; "
            "write an empty .txt for images without defects to say so",
            file=sys.stderr,
        )
    if skipped:
        print(
            f"warning: {len(skipped)} image(s) left out, unreadable or badly labelled:",
            file=sys.stderr,
        )
        for line in skipped[:10]:
            print(f"  {line}", file=sys.stderr)
        if len(skipped) > 10:
            print(f"  ... and {len(skipped) - 10} more", file=sys.stderr)


def _check_classes(
    *, model: Path, model_names: dict[int, str], data: str, data_names: dict[int, str]
) -> None:
    from inspection.errors import DatasetError

    if len(model_names) != len(data_names):
        raise DatasetError(
            f"{model} predicts {len(model_names)} classes ({_listing(model_names)}) but {data} "
            f"has {len(data_names)} ({_listing(data_names)}); evaluate on the data the model "
            "was trained for"
        )
    if model_names != data_names:
        print(
            f"warning: {model} names its classes {_listing(model_names)}, {data} names them "
            f"{_listing(data_names)}; scoring by class id with the data's names",
            file=sys.stderr,
        )


def _listing(names: dict[int, str], *, most: int = 8) -> str:
    ids = sorted(names)
    more = f", ... {len(ids) - most} more" if len(ids) > most else ""
    return ", ".join(f"{i}={names[i]}" for i in ids[:most]) + more


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
        f"mAP50 {result.map50:.4f}   mAP50-95 {result.map50_95:.4f}   (pycocotools)",
        f"at conf >= {conf}: precision {result.precision:.3f}   recall {result.recall:.3f}   "
        f"F1 {result.f1:.3f}   false positives {len(result.false_positives)}   "
        f"misses {len(result.misses)}",
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
