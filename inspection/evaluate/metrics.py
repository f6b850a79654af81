"""How good a detector is on labelled images: COCO mAP, and what the line would see.

Example::

    >>> import numpy as np
    >>> from inspection.detections import Detections
    >>> from inspection.evaluate.metrics import evaluate
    >>> names = {0: "scratch", 1: "dent"}
    >>> truth = Detections(xyxy=[[10, 10, 50, 30]], confidence=[1.0], class_id=[0], names=names)
    >>> found = Detections(xyxy=[[11, 10, 50, 31]], confidence=[0.9], class_id=[0], names=names)
    >>> result = evaluate([found], [truth], names=names, deploy_conf=0.25)
    >>> round(result.map50, 3), result.per_class[0].recall, result.per_class[1].ap50
    (1.0, 1.0, None)
    >>> result.to_json()["per_class"]["scratch"]["support"], result.confusion.tolist()
    (1, [[1, 0, 0], [0, 0, 0], [0, 0, 0]])

Two views of the same predictions, on purpose:

- ranking quality over all scores: mAP50 and mAP50-95, per-class AP and PR curves, computed by
  COCOeval: faster-coco-eval's C++ port (about 3x faster here), which tests/test_evaluation.py
  holds to the figures of pycocotools, the reference implementation, so a figure here means
  what it means in papers. Feed it predictions made at a very low threshold (Ultralytics
  validates at 0.001).
- what the line does at its threshold (`deploy_conf`): per-class precision, recall and F1, a
  confusion matrix, and the false positives and misses to look at in the report.

`criterion="deeppcb"` adds the DeepPCB paper's score: a detection is right when its IoU with a
truth of the same class is above 0.33 (one-to-one), at `deploy_conf`.

Pure: no files, no model, no pyplot. `training/report.py` draws the result.
"""

from __future__ import annotations

import contextlib
import io
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, cast

import numpy as np

from inspection.detections import Detections

Criterion = Literal["coco", "deeppcb"]
CocoEngine = Literal["faster-coco-eval", "pycocotools"]

# Matching IoU for the deploy-threshold view (precision, recall, confusion matrix, gallery).
MATCH_IOU = 0.5
# The DeepPCB paper counts a detection as right above this IoU (strictly greater).
DEEPPCB_IOU = 0.33
# Ultralytics keeps up to 300 boxes per image (max_det=300); pycocotools' default of 100
# would drop the lowest-scored ones and lower recall, so mAP would not be comparable.
_MAX_DETS = [1, 10, 300]


@dataclass(frozen=True)
class ClassMetrics:
    """One class. AP is None when the class has no truth box: it is then left out of mAP,
    as in COCOeval and Ultralytics. Counts and rates are at the deploy threshold."""

    name: str
    support: int  # truth boxes
    ap50: float | None
    ap50_95: float | None
    precision: float
    recall: float
    f1: float
    tp: int
    fp: int
    fn: int

    def to_json(self) -> dict[str, Any]:
        return {
            "support": self.support,
            "ap50": _round(self.ap50),
            "ap50_95": _round(self.ap50_95),
            "precision": _round(self.precision),
            "recall": _round(self.recall),
            "f1": _round(self.f1),
            "tp": self.tp,
            "fp": self.fp,
            "fn": self.fn,
        }


@dataclass(frozen=True)
class PRCurve:
    """Precision at 101 recall points (0, 0.01, ..., 1) at IoU 0.5, from COCOeval: already
    the monotone envelope, and 0 beyond the highest recall reached."""

    recall: np.ndarray
    precision: np.ndarray


@dataclass(frozen=True)
class Error:
    """A false positive (a prediction at the deploy threshold matching no truth of its class)
    or a miss (a truth no such prediction matched), for the report's gallery.
    `score` is None for a miss."""

    kind: Literal["false_positive", "miss"]
    image: int  # index into the sequences given to `evaluate`
    box: tuple[float, float, float, float]  # x1, y1, x2, y2 in the image's pixels
    class_id: int
    score: float | None

    def to_json(self) -> dict[str, Any]:
        return {
            "kind": self.kind,
            "image": self.image,
            "box": [round(v, 2) for v in self.box],
            "class_id": self.class_id,
            "score": _round(self.score),
        }


@dataclass(frozen=True)
class DeepPCBScore:
    """The DeepPCB paper's precision, recall and F-score at the deploy threshold."""

    precision: float
    recall: float
    fscore: float
    tp: int
    fp: int
    fn: int
    per_class: dict[int, tuple[float, float, float]]  # class -> (precision, recall, fscore)
    iou: float = DEEPPCB_IOU

    def to_json(self, names: Mapping[int, str]) -> dict[str, Any]:
        return {
            "iou": self.iou,
            "precision": _round(self.precision),
            "recall": _round(self.recall),
            "fscore": _round(self.fscore),
            "tp": self.tp,
            "fp": self.fp,
            "fn": self.fn,
            "per_class": {
                names[c]: {"precision": _round(p), "recall": _round(r), "fscore": _round(f)}
                for c, (p, r, f) in self.per_class.items()
            },
        }


@dataclass(frozen=True, eq=False)
class Evaluation:
    """Everything `evaluate` found.

    Attributes:
        map50, map50_95: COCO mAP at IoU 0.5 and averaged over 0.5:0.95, over the classes
            that have truth boxes (0.0 when no class has any).
        per_class: class id -> `ClassMetrics`, for every class in `names`.
        precision, recall, f1: over all classes at the deploy threshold (micro average).
        confusion: (nc + 1, nc + 1) counts indexed [predicted, true] as Ultralytics does; the
            last row and column are background (a miss counts in the last row, a false
            positive in the last column).
        pr_curves: class id -> `PRCurve`, for classes with truth boxes.
        false_positives, misses: `Error`s at the deploy threshold; false positives by score,
            highest first.
        deeppcb: the DeepPCB score, when asked for with criterion="deeppcb".
        images, instances: how many images and truth boxes were evaluated.
        deploy_conf: the threshold of the deploy-time view.
        names: class id -> name.
        predictions, truths: the inputs, kept for the report's gallery.
    """

    map50: float
    map50_95: float
    per_class: dict[int, ClassMetrics]
    precision: float
    recall: float
    f1: float
    confusion: np.ndarray
    pr_curves: dict[int, PRCurve]
    false_positives: list[Error]
    misses: list[Error]
    deeppcb: DeepPCBScore | None
    images: int
    instances: int
    deploy_conf: float
    names: dict[int, str]
    predictions: Sequence[Detections] = field(default=(), repr=False)
    truths: Sequence[Detections] = field(default=(), repr=False)

    def to_json(self) -> dict[str, Any]:
        """JSON-ready summary: map50, map50_95, per_class {name: {...}}, deeppcb (only with
        that criterion), images, instances, deploy_conf, and the deploy-time totals."""
        labels = [self.names[c] for c in sorted(self.names)] + ["background"]
        result: dict[str, Any] = {
            "map50": _round(self.map50),
            "map50_95": _round(self.map50_95),
            "precision": _round(self.precision),
            "recall": _round(self.recall),
            "f1": _round(self.f1),
            "per_class": {self.names[c]: m.to_json() for c, m in sorted(self.per_class.items())},
            "images": self.images,
            "instances": self.instances,
            "deploy_conf": self.deploy_conf,
            "false_positives": len(self.false_positives),
            "misses": len(self.misses),
            "confusion_matrix": {
                "order": "[predicted][true]",
                "labels": labels,
                "matrix": self.confusion.astype(int).tolist(),
            },
        }
        if self.deeppcb is not None:
            result["deeppcb"] = self.deeppcb.to_json(self.names)
        return result


def evaluate(
    predictions: Sequence[Detections],
    truths: Sequence[Detections],
    *,
    names: Mapping[int, str],
    deploy_conf: float = 0.25,
    criterion: Criterion = "coco",
) -> Evaluation:
    """Score `predictions` against `truths`, image by image (the two sequences align).

    `predictions` should hold every box the model gives above a very low threshold (0.001,
    as Ultralytics validates): mAP ranks all of them. The deploy-time figures use only
    those at `deploy_conf` or above. `truths` are ground-truth boxes (their confidence is
    ignored). Class ids must be keys of `names`.
    """
    if len(predictions) != len(truths):
        raise ValueError(
            f"evaluate needs one prediction per truth image, got {len(predictions)} "
            f"predictions for {len(truths)} images"
        )
    if criterion not in ("coco", "deeppcb"):
        raise ValueError(f"criterion must be 'coco' or 'deeppcb', not {criterion!r}")
    names = {int(k): str(v) for k, v in names.items()}
    for kind, group in (("prediction", predictions), ("truth", truths)):
        for index, detections in enumerate(group):
            unknown = set(detections.class_id.tolist()) - set(names)
            if unknown:
                raise ValueError(
                    f"{kind} of image {index} has class ids {sorted(unknown)} not in names "
                    f"{sorted(names)}"
                )

    map50, map50_95, ap50, ap50_95, curves = _coco_scores(predictions, truths, names=names)
    deployed = [p[p.confidence >= deploy_conf] for p in predictions]
    counts, false_positives, misses = _deploy_counts(deployed, truths, names=names)
    per_class = {}
    for c in sorted(names):
        tp, fp, fn = counts[c]
        precision, recall, f1 = _rates(tp, fp, fn)
        per_class[c] = ClassMetrics(
            name=names[c],
            support=tp + fn,
            ap50=ap50.get(c),
            ap50_95=ap50_95.get(c),
            precision=precision,
            recall=recall,
            f1=f1,
            tp=tp,
            fp=fp,
            fn=fn,
        )
    precision, recall, f1 = _rates(*_totals(counts))
    return Evaluation(
        map50=map50,
        map50_95=map50_95,
        per_class=per_class,
        precision=precision,
        recall=recall,
        f1=f1,
        confusion=confusion_matrix(deployed, truths, class_ids=sorted(names)),
        pr_curves=curves,
        false_positives=sorted(false_positives, key=lambda e: -(e.score or 0.0)),
        misses=misses,
        deeppcb=deeppcb_score(deployed, truths, names=names) if criterion == "deeppcb" else None,
        images=len(truths),
        instances=int(sum(len(t) for t in truths)),
        deploy_conf=float(deploy_conf),
        names=names,
        predictions=tuple(predictions),
        truths=tuple(truths),
    )


# -- COCO mAP, by COCOeval -----------------------------------------------------------------


def _coco_scores(
    predictions: Sequence[Detections],
    truths: Sequence[Detections],
    *,
    names: dict[int, str],
    engine: CocoEngine = "faster-coco-eval",
) -> tuple[float, float, dict[int, float], dict[int, float], dict[int, PRCurve]]:
    COCO, COCOeval = _coco_engine(engine)
    if not any(len(t) for t in truths):
        return 0.0, 0.0, {}, {}, {}
    images = [
        {"id": i + 1, "width": t.image_wh[0], "height": t.image_wh[1]}
        for i, t in enumerate(truths)
    ]
    # Category ids are class ids + 1, and annotation ids start at 1: COCOeval stores the id
    # of the matched truth per detection and reads 0 as "unmatched".
    categories = [{"id": c + 1, "name": names[c]} for c in sorted(names)]
    ground_truth = _coco(COCO, images, categories, _annotations(truths, with_scores=False))
    detections = _coco(COCO, images, categories, _annotations(predictions, with_scores=True))

    evaluator = COCOeval(ground_truth, detections, iouType="bbox", print_function=_quiet)
    evaluator.params.maxDets = list(_MAX_DETS)  # see _MAX_DETS
    evaluator.params.areaRng = [[0.0, 1e10]]  # "all" only: defect size bands are not COCO's
    evaluator.params.areaRngLbl = ["all"]
    with contextlib.redirect_stdout(io.StringIO()):  # COCOeval prints progress; --json owns stdout
        evaluator.evaluate()
        evaluator.accumulate()
    # precision[iou threshold, recall point, category, area range, max dets]; -1 where a
    # category has no truth box.
    precision = evaluator.eval["precision"][:, :, :, 0, -1]
    ap50, ap50_95, curves = {}, {}, {}
    for k, category in enumerate(evaluator.params.catIds):
        per_class = precision[:, :, k]
        if (per_class < 0).all():
            continue
        class_id = category - 1
        ap50[class_id] = float(per_class[0][per_class[0] > -1].mean())
        ap50_95[class_id] = float(per_class[per_class > -1].mean())
        curves[class_id] = PRCurve(
            recall=np.asarray(evaluator.params.recThrs, dtype=np.float64).copy(),
            precision=np.clip(per_class[0], 0, None).astype(np.float64),
        )
    # The mean over classes with truths equals COCOeval.summarize()'s mean over valid cells.
    map50 = float(np.mean(list(ap50.values()))) if ap50 else 0.0
    map50_95 = float(np.mean(list(ap50_95.values()))) if ap50_95 else 0.0
    return map50, map50_95, ap50, ap50_95, curves


def _annotations(group: Sequence[Detections], *, with_scores: bool) -> list[dict[str, Any]]:
    annotations: list[dict[str, Any]] = []
    for index, detections in enumerate(group):
        # tolist(): plain floats (numpy's stubs type a row of a 2-D array as a scalar)
        xyxy = cast("list[list[float]]", detections.xyxy.astype(np.float64).tolist())
        for box, class_id, score in zip(xyxy, detections.class_id, detections.confidence, strict=True):
            width, height = float(box[2] - box[0]), float(box[3] - box[1])
            annotation = {
                "id": len(annotations) + 1,
                "image_id": index + 1,
                "category_id": int(class_id) + 1,
                "bbox": [float(box[0]), float(box[1]), width, height],
                "area": width * height,
                "iscrowd": 0,
            }
            if with_scores:
                annotation["score"] = float(score)
            annotations.append(annotation)
    return annotations


def _coco_engine(engine: CocoEngine) -> tuple[Any, Any]:
    """COCO and COCOeval of `engine`: faster-coco-eval (C++, the default) or pycocotools (the
    reference; tests/test_evaluation.py holds the two to the same figures)."""
    if engine == "pycocotools":
        from pycocotools.coco import COCO
        from pycocotools.cocoeval import COCOeval

        return COCO, _PycocotoolsEval(COCOeval)
    from faster_coco_eval import COCO as FasterCOCO
    from faster_coco_eval import COCOeval_faster

    return FasterCOCO, COCOeval_faster


def _quiet(*_: object) -> None:
    """faster-coco-eval's print_function: progress lines stay off stdout (--json owns it)."""


class _PycocotoolsEval:
    """pycocotools' COCOeval, taking (and dropping) faster-coco-eval's print_function."""

    def __init__(self, cls: Any) -> None:
        self.cls = cls

    def __call__(self, ground_truth: Any, detections: Any, *, iouType: str, print_function: Any) -> Any:
        return self.cls(ground_truth, detections, iouType=iouType)


def _coco(coco_class, images: list, categories: list, annotations: list):
    # Built in memory rather than with COCO.loadRes, which fails on an empty detection list.
    coco = coco_class()
    coco.dataset = {"images": images, "categories": categories, "annotations": annotations}
    with contextlib.redirect_stdout(io.StringIO()):
        coco.createIndex()
    return coco


# -- the deploy-threshold view ---------------------------------------------------------------


def box_iou(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(len(a), len(b)) IoU of xyxy boxes, continuous coordinates (no +1), as COCO and
    Ultralytics compute it."""
    a = np.asarray(a, dtype=np.float64).reshape(-1, 4)
    b = np.asarray(b, dtype=np.float64).reshape(-1, 4)
    top_left = np.maximum(a[:, None, :2], b[None, :, :2])
    bottom_right = np.minimum(a[:, None, 2:], b[None, :, 2:])
    inter = np.clip(bottom_right - top_left, 0, None).prod(axis=2)
    area_a = np.clip(a[:, 2:] - a[:, :2], 0, None).prod(axis=1)
    area_b = np.clip(b[:, 2:] - b[:, :2], 0, None).prod(axis=1)
    union = area_a[:, None] + area_b[None, :] - inter
    return np.divide(inter, union, out=np.zeros_like(inter), where=union > 0)


def match(
    prediction: Detections,
    truth: Detections,
    *,
    iou: float = MATCH_IOU,
    same_class: bool = True,
    strictly_above: bool = False,
) -> np.ndarray:
    """For each predicted box, the index of the truth it matches, or -1.

    Greedy and one-to-one, as COCOeval and Ultralytics' validator match: predictions in
    descending score order each take the unclaimed truth they overlap most, if that overlap
    reaches `iou` (is above it, with `strictly_above`). With `same_class`, only truths of
    the prediction's class are candidates.
    """
    matched = np.full(len(prediction), -1, dtype=np.int64)
    if not len(prediction) or not len(truth):
        return matched
    overlap = box_iou(prediction.xyxy, truth.xyxy)
    if same_class:
        overlap = np.where(prediction.class_id[:, None] == truth.class_id[None, :], overlap, 0.0)
    claimed = np.zeros(len(truth), dtype=bool)
    for p in np.argsort(-prediction.confidence, kind="stable"):
        available = np.where(claimed, -1.0, overlap[p])
        t = int(available.argmax())
        good = available[t] > iou if strictly_above else available[t] >= iou
        if good and available[t] > 0:
            matched[p] = t
            claimed[t] = True
    return matched


def _deploy_counts(
    deployed: Sequence[Detections],
    truths: Sequence[Detections],
    *,
    names: Mapping[int, str],
    iou: float = MATCH_IOU,
    strictly_above: bool = False,
) -> tuple[dict[int, list[int]], list[Error], list[Error]]:
    """Per-class [tp, fp, fn] of thresholded predictions matched one-to-one to truths of
    their class (see `match` for `iou` and `strictly_above`), and the false positives and
    misses. Boxes of classes not in `names` are not counted (`evaluate` rejects them)."""
    counts = {c: [0, 0, 0] for c in names}  # class -> [tp, fp, fn]
    false_positives, misses = [], []
    for image, (prediction, truth) in enumerate(zip(deployed, truths, strict=True)):
        matched = match(prediction, truth, iou=iou, strictly_above=strictly_above)
        hit = np.zeros(len(truth), dtype=bool)
        hit[matched[matched >= 0]] = True
        for p, t in enumerate(matched):
            class_id = int(prediction.class_id[p])
            if class_id not in counts:
                continue
            if t >= 0:
                counts[class_id][0] += 1
                continue
            counts[class_id][1] += 1
            false_positives.append(
                Error(
                    kind="false_positive",
                    image=image,
                    box=_box(prediction.xyxy[p]),
                    class_id=class_id,
                    score=float(prediction.confidence[p]),
                )
            )
        for t in np.flatnonzero(~hit):
            class_id = int(truth.class_id[t])
            if class_id not in counts:
                continue
            counts[class_id][2] += 1
            misses.append(
                Error(
                    kind="miss", image=image, box=_box(truth.xyxy[t]), class_id=class_id, score=None
                )
            )
    return counts, false_positives, misses


def confusion_matrix(
    deployed: Sequence[Detections], truths: Sequence[Detections], *, class_ids: Sequence[int]
) -> np.ndarray:
    """(classes + 1)^2 counts [predicted, true], rows and columns in `class_ids` order, the
    last one background, with Ultralytics' ConfusionMatrix rules: class-agnostic greedy
    one-to-one matching by score; a matched pair counts at [predicted class, true class] (a
    class swap off the diagonal), an unmatched truth at [background, class], an unmatched
    prediction at [class, background].

    Two deliberate differences from Ultralytics' defaults, so that the matrix agrees with
    the per-class precision and recall: predictions are kept at score >= the threshold (not
    >), and pairs match at IoU >= 0.5 (not > 0.45). Pass predictions already thresholded.
    """
    position = {int(c): i for i, c in enumerate(class_ids)}
    background = len(position)
    matrix = np.zeros((background + 1, background + 1), dtype=np.int64)
    for prediction, truth in zip(deployed, truths, strict=True):
        predicted = [position[int(c)] for c in prediction.class_id]
        true = [position[int(c)] for c in truth.class_id]
        matched = match(prediction, truth, same_class=False)
        hit = np.zeros(len(truth), dtype=bool)
        for p, t in enumerate(matched):
            if t >= 0:
                hit[t] = True
                matrix[predicted[p], true[t]] += 1
            else:
                matrix[predicted[p], background] += 1
        for t in np.flatnonzero(~hit):
            matrix[background, true[t]] += 1
    return matrix


def deeppcb_score(
    deployed: Sequence[Detections], truths: Sequence[Detections], *, names: Mapping[int, str]
) -> DeepPCBScore:
    """The DeepPCB paper's criterion: a prediction is right when its IoU with a truth of the
    same class is above 0.33; each truth counts once (greedy by score). Pass predictions
    already thresholded at the deploy confidence."""
    counts, _, _ = _deploy_counts(
        deployed,
        truths,
        names={int(c): str(v) for c, v in names.items()},
        iou=DEEPPCB_IOU,
        strictly_above=True,
    )
    tp, fp, fn = _totals(counts)
    precision, recall, fscore = _rates(tp, fp, fn)
    return DeepPCBScore(
        precision=precision,
        recall=recall,
        fscore=fscore,
        tp=tp,
        fp=fp,
        fn=fn,
        per_class={c: _rates(*counts[c]) for c in sorted(counts)},
    )


# -- small helpers ---------------------------------------------------------------------------


def _ratio(numerator: int, denominator: int) -> float:
    return numerator / denominator if denominator else 0.0


def _rates(tp: int, fp: int, fn: int) -> tuple[float, float, float]:
    """(precision, recall, F1) from counts, each 0.0 where its denominator is 0."""
    # F1 is 2PR/(P+R) written on counts: defined (0) when there is nothing to find and
    # nothing found.
    return _ratio(tp, tp + fp), _ratio(tp, tp + fn), _ratio(2 * tp, 2 * tp + fp + fn)


def _totals(counts: Mapping[int, Sequence[int]]) -> tuple[int, int, int]:
    """(tp, fp, fn) summed over the classes of `counts` (class -> [tp, fp, fn])."""
    tp, fp, fn = (sum(v[i] for v in counts.values()) for i in range(3))
    return tp, fp, fn


def _box(box: np.ndarray) -> tuple[float, float, float, float]:
    return tuple(float(v) for v in box)  # type: ignore[return-value]


def _round(value: float | None, digits: int = 5) -> float | None:
    return None if value is None else round(float(value), digits)
