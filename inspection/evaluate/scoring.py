"""Scoring a model on one labelled split: what `qc eval`, the promotion gate and the export
check share, so the three numbers are computed the same way.

Example::

    from inspection.evaluate.scoring import load_split, score

    names, samples = load_split("deeppcb@v3", split="test")
    run = score(lambda pixels: detector.predict([pixels])[0], names=names, samples=samples)
    run.evaluation.map50_95

Images are decoded by `inspection.detect.imaging.read_file` and predicted one at a time, as a frame
on the line is. Ultralytics validates at conf 0.001 (mAP ranks every box), so the predictor
given to `score` should too; the deploy threshold only enters precision, recall and F1.
`score_many` scores several predictors in one pass (each image read once), as the export
check compares torch with its ONNX variants. A `ReferencePredictor` (a reference model's,
from `onnx_predictor`) is also given each image's golden part (formats/yolo.reference_path_for,
or the dataset version's stored reference).
"""

from __future__ import annotations

import sys
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from inspection.detect.tiling import Tiling
from inspection.detections import Detections
from inspection.evaluate.metrics import Criterion, Evaluation, evaluate

# Ultralytics validates at conf 0.001: mAP ranks every box the model gives, so the model
# must not cut them at the deploy threshold first. 0.7 and 300 are its NMS defaults too.
RANKING_CONF = 0.001
NMS_IOU = 0.7
MAX_DET = 300
# The one class of class-agnostic scoring (a good-only model's boxes, and every truth box).
AGNOSTIC = {0: "anomaly"}


class ReferencePredictor:
    """A predictor that judges each image against its reference: `predict(pixels, reference)`."""

    def __init__(self, predict: Callable[[np.ndarray, np.ndarray], Detections]) -> None:
        self._predict = predict

    def __call__(self, pixels: np.ndarray, reference: np.ndarray) -> Detections:
        return self._predict(pixels, reference)


Predictor = Callable[[np.ndarray], Detections] | ReferencePredictor


@dataclass(frozen=True)
class ScoredSplit:
    evaluation: Evaluation
    paths: list[Path]  # the images scored, aligned with evaluation.predictions
    skipped: list[str] = field(default_factory=list)  # unreadable or badly labelled, named
    unlabelled: int = 0  # images without a label file, scored as defect-free


def score(
    predict: Predictor,
    *,
    names: dict[int, str],
    samples: list[Sample],
    deploy_conf: float = 0.25,
    criterion: Criterion = "coco",
    progress: bool = True,
    label: str = "eval",
    source: str = "the data",
    agnostic: bool = False,
) -> ScoredSplit:
    """Run `predict` over every readable image of `samples` and score it against the truth.
    `source` names the data in error messages; `agnostic` scores every truth box as one class
    (`AGNOSTIC`), for a model that finds anomalies without naming them."""
    return score_many({label: predict}, names=names, samples=samples, deploy_conf=deploy_conf,
                      criterion=criterion, progress=progress, label=label, source=source,
                      agnostic=agnostic)[label]


def score_many(
    predictors: Mapping[str, Predictor],
    *,
    names: dict[int, str],
    samples: list[Sample],
    deploy_conf: float = 0.25,
    criterion: Criterion = "coco",
    progress: bool = True,
    label: str = "eval",
    source: str = "the data",
    agnostic: bool = False,
) -> dict[str, ScoredSplit]:
    """`score` for several predictors in one pass: each image is read and its labels parsed
    once, then given to every predictor. Returns a `ScoredSplit` per key of `predictors`."""
    from tqdm import tqdm

    from inspection.detect.imaging import read_file
    from inspection.errors import DatasetError, ImageError

    predictions: dict[str, list[Detections]] = {key: [] for key in predictors}
    truths: list[Detections] = []
    paths: list[Path] = []
    skipped: list[str] = []
    unlabelled = 0
    for sample in tqdm(samples, desc=label, unit="image", file=sys.stderr, disable=not progress):
        try:
            pixels = read_file(sample.image)
        except ImageError as error:
            skipped.append(f"{error}; fix or delete it")
            continue
        height, width = pixels.shape[:2]
        truth = sample.truth
        if truth is None:
            truth, problem, missing = _yolo_truth(sample, names=names, image_wh=(width, height))
            if truth is None:
                skipped.append(problem)
                continue
            unlabelled += missing
        if agnostic:
            truth = Detections(xyxy=truth.xyxy, confidence=truth.confidence, class_id=np.zeros(len(truth)),
                               names=AGNOSTIC, image_wh=truth.image_wh)
        reference: np.ndarray | None = None
        if any(isinstance(p, ReferencePredictor) for p in predictors.values()):
            if sample.reference is None:
                skipped.append(f"{sample.image}: no reference image (a references/ or templates/ "
                               "folder beside images/, same name); add its golden part")
                continue
            try:
                reference = read_file(sample.reference)
            except ImageError as error:
                skipped.append(f"{error}; fix or delete it (the reference of {sample.image})")
                continue
        for key, predict in predictors.items():
            if isinstance(predict, ReferencePredictor):
                assert reference is not None
                predictions[key].append(predict(pixels, reference))
            else:
                predictions[key].append(predict(pixels))
        truths.append(truth)
        paths.append(sample.image)
    if not truths:
        named = "; ".join(skipped[:3]) + (f"; and {len(skipped) - 3} more" if len(skipped) > 3 else "")
        raise DatasetError(f"{source}: no image could be read with its labels ({named})")
    return {
        key: ScoredSplit(
            evaluation=evaluate(predicted, truths, names=AGNOSTIC if agnostic else names, deploy_conf=deploy_conf,
                                criterion=criterion),
            paths=list(paths),
            skipped=list(skipped),
            unlabelled=unlabelled,
        )
        for key, predicted in predictions.items()
    }


def score_onnx(
    model: Path,
    data: str,
    *,
    split: str,
    deploy_conf: float = 0.25,
    criterion: Criterion = "coco",
    providers: list[str] | None = None,
    progress: bool = True,
    tiling: Tiling | None = None,
) -> ScoredSplit:
    """Score an ONNX model through the production `Detector` on `split` of `data` (tile by
    tile with `tiling`)."""
    from inspection.errors import DatasetError

    names, samples = load_split(data, split=split)
    if not samples:
        raise DatasetError(f"{data}: the {split} split has no images; pick another --split")
    predict = onnx_predictor(model, names=names, data=data, providers=providers, tiling=tiling)
    return score(predict, names=names, samples=samples, deploy_conf=deploy_conf,
                 criterion=criterion, progress=progress, label=f"eval {split}",
                 source=f"{data} ({split})", agnostic=finds_anomalies(model) and names != AGNOSTIC)


def finds_anomalies(model: Path) -> bool:
    """Whether the ONNX `model` names one class, `anomaly` (a good-only model trained on
    synthetic defects, training/goodonly_data.py): it is scored class-agnostic."""
    from inspection.detect.model_info import parse_metadata
    from inspection.detect.onnx_file import read_metadata

    return parse_metadata(read_metadata(model)).names == AGNOSTIC


def score_goodonly(
    model: Path,
    data: str,
    *,
    split: str,
    deploy_conf: float = 0.25,
    criterion: Criterion = "coco",
    progress: bool = True,
) -> ScoredSplit:
    """Score a good-only model (inspection/detect/goodonly.py) on `split` of `data`,
    class-agnostic: its boxes are "anomaly", and any truth box, whatever its class, is one to
    find. Every image is judged against the model's own golden part (one station's)."""
    from inspection.detect.goodonly import GoodOnlyModel
    from inspection.errors import DatasetError

    judge = GoodOnlyModel.load(model)
    names, samples = load_split(data, split=split)
    if not samples:
        raise DatasetError(f"{data}: the {split} split has no images; pick another --split")
    return score(lambda pixels: judge.predict(pixels).detections, names=names, samples=samples,
                 deploy_conf=deploy_conf, criterion=criterion, progress=progress, label=f"eval {split}",
                 source=f"{data} ({split})", agnostic=True)


def gate_evaluation(model: Path, data: str, *, split: str, progress: bool = True) -> dict:
    """The evaluation a registry version keeps in its card for the promotion gate
    (inspection/models/gate.py), on `split` of its frozen holdout `data`. An ONNX model: its
    scores on the data's classes (`score_onnx`). A good-only model (.qcgood) names none of
    them: scored against the data's classes, every class's AP and recall are 0, so the first
    supervised model that finds them replaces it through the usual gate. Its class-agnostic
    scores (`score_goodonly`: how many defects it did find, whatever their class) are kept
    beside them under "agnostic", for the engineer who approves the replacement. A learned
    good-only detector (an ONNX model whose one class is `anomaly`) is scored the same way."""
    from inspection.detect.goodonly import is_goodonly_file
    from inspection.errors import DatasetError

    model = Path(model)
    learned = not is_goodonly_file(model) and _anomaly_only(model)  # a learned good-only detector
    if not is_goodonly_file(model) and not learned:
        return score_onnx(model, data, split=split, progress=progress).evaluation.to_json()
    names, samples = load_split(data, split=split)
    if not samples:
        raise DatasetError(f"{data}: the {split} split has no images; pick another --split")
    if learned:
        agnostic = score(onnx_predictor(model, names=AGNOSTIC, data=data), names=names, samples=samples,
                         progress=progress, label=f"eval {split}", source=f"{data} ({split})", agnostic=True)
    else:
        agnostic = score_goodonly(model, data, split=split, progress=progress)
    named = score(lambda pixels: Detections.empty(names=names, image_wh=(pixels.shape[1], pixels.shape[0])),
                  names=names, samples=samples, progress=False, label=f"eval {split}",
                  source=f"{data} ({split})")
    return {**named.evaluation.to_json(), "goodonly": True, "agnostic": agnostic.evaluation.to_json()}


def _anomaly_only(model: Path) -> bool:
    """Whether the ONNX `model`'s one class is `anomaly` (a learned good-only detector), read
    from its metadata without an engine."""
    from inspection.detect.model_info import parse_metadata
    from inspection.detect.onnx_file import read_metadata
    from inspection.errors import ModelError

    try:
        return set(parse_metadata(read_metadata(model)).names.values()) == set(AGNOSTIC.values())
    except (ModelError, OSError, ValueError):
        return False  # score_onnx names what is wrong with the file


def onnx_predictor(
    model: Path, *, names: dict[int, str], data: str, providers: list[str] | None = None,
    tiling: Tiling | None = None,
) -> Predictor:
    """A predictor for `score`: the ONNX `model` through the production `Detector`, at the
    ranking threshold, after checking its classes against `names` (those of `data`); a
    `ReferencePredictor` for a reference model."""
    from inspection.detect.detector import Detector
    from inspection.settings import Settings

    settings = Settings()
    detector = Detector(model, providers=providers or settings.provider_list(), conf=RANKING_CONF,
                        iou=NMS_IOU, max_det=MAX_DET, threads=settings.threads,
                        cache_dir=settings.home / "trt-cache")
    if detector.names != AGNOSTIC:  # an anomaly model is scored against any truth box
        check_classes(model=model, model_names=detector.names, data=data, data_names=names)
    # One image per call: minimal letterbox padding then depends on the image alone, as for
    # a frame on the line, not on which images share a batch.
    if tiling is not None:
        if detector.needs_reference and not _composed(data):
            return ReferencePredictor(lambda pixels, reference: detector.predict_tiled(
                pixels, tiling, reference=reference))
        return lambda pixels: detector.predict_tiled_input(pixels, tiling)
    if detector.needs_reference and _composed(data):
        # Training's own composites (training/reference_data.py): already the network's input.
        return lambda pixels: detector.predict_inputs([pixels])[0]
    if detector.needs_reference:
        return ReferencePredictor(lambda pixels, reference: detector.predict([pixels], references=[reference])[0])
    return lambda pixels: detector.predict([pixels])[0]


COMPOSED_KEY = "qc_input"  # in a data.yaml of composites: "frame,reference,absdiff"


def _composed(data: str) -> bool:
    """Whether `data` is a data.yaml whose images are reference composites already."""
    import yaml

    if not data.endswith((".yaml", ".yml")):
        return False
    try:
        spec = yaml.safe_load(Path(data).read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError):
        return False  # read_data_yaml reports it
    return isinstance(spec, dict) and bool(spec.get(COMPOSED_KEY))


@dataclass(frozen=True)
class Sample:
    image: Path
    label: Path | None = None  # YOLO label file, parsed once the image's size is known
    truth: Detections | None = None  # already parsed (dataset versions)
    reference: Path | None = None  # the image's golden part, when the data has one


def load_split(data: str, *, split: str) -> tuple[dict[int, str], list[Sample]]:
    """Class names and the images of `split`, from a data.yaml or a dataset version."""
    path = Path(data)
    if data.endswith((".yaml", ".yml")) or path.exists():
        return _from_data_yaml(path, split=split)
    return _from_version(data, split=split)


def _from_version(reference: str, *, split: str) -> tuple[dict[int, str], list[Sample]]:
    from inspection.data.formats import SPLITS
    from inspection.data.versions import open_version
    from inspection.errors import DatasetError

    version = open_version(reference)
    samples = [
        Sample(image=item.path, truth=item.detections, reference=item.reference)
        for item in version.images(split=split)
    ]
    if not samples:
        counts = {s: sum(e["split"] == s for e in version.entries) for s in SPLITS}
        have = ", ".join(f"{s} {n}" for s, n in counts.items())
        raise DatasetError(
            f"{version.ref} has no {split!r} images ({have}); pick another --split"
        )
    return version.names, samples


def _from_data_yaml(path: Path, *, split: str) -> tuple[dict[int, str], list[Sample]]:
    from inspection.data.formats.yolo import label_path_for, read_data_yaml, reference_path_for
    from inspection.errors import DatasetError

    # The same reading as training's (training.data): images the line's decoder cannot read
    # are listed too, and `score` reports them as skipped.
    data = read_data_yaml(path, splits=(split,))
    if split not in data.splits:
        present = ", ".join(data.declared) or "none"
        raise DatasetError(
            f"{data.path}: no '{split}:' entry (splits in the file: {present}); add "
            f"'{split}: images/{split}' or pick another --split"
        )
    # Ultralytics' rule: the last `images` folder of the path becomes `labels`.
    return data.names, [
        Sample(image=image.path, label=label_path_for(image.path, root=Path(image.path.anchor)),
               reference=reference_path_for(image.path))
        for image in data.splits[split]
    ]


def _yolo_truth(
    sample: Sample, *, names: dict[int, str], image_wh: tuple[int, int]
) -> tuple[Detections | None, str, int]:
    """(truth, problem, 1 if the label file is missing) for one image of a YOLO folder.

    A missing label file reads as "no defects", as Ultralytics' validator reads it (counted
    and reported, so a folder without labels does not pass unnoticed); a bad one leaves the
    image out, as Ultralytics does.
    """
    from inspection.data.formats.yolo import parse_labels

    if sample.label is None or not sample.label.is_file():
        return Detections.empty(names=names, image_wh=image_wh), "", 1
    detections, problems = parse_labels(
        sample.label.read_text(encoding="utf-8", errors="replace"),
        image_wh=image_wh,
        names=names,
        file=str(sample.label),
        image=str(sample.image),
    )
    if detections is None:
        return None, str(problems[0]), 0
    return detections, "", 0


def warn(*, skipped: list[str], unlabelled: int) -> None:
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


def check_classes(
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
