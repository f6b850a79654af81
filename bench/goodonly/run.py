"""The good-only model (golden part + good frames, no defect label) on DeepPCB's real defects,
beside a thresholded difference as the floor (issue 23, item 4).

    nice -n 19 .venv/bin/python bench/goodonly/run.py [--tune-templates 24] [--good 16] [--val 200]

DeepPCB has one defect-free template per board area and no good frames, so good frames are
made from a template by camera-like jitter (`inspection.data.synth.optics.jitter`: sub-pixel
to 2 px shift, exposure, sensor noise, a JPEG round trip). No test image and no label of any
board is used to build or tune:

- Tuning, on the templates of the `boards.yaml` TRAINING boards only: for each template, a
  model is built from `--good` jittered copies (its threshold chosen on the held-out share for
  `--false-alarms` boxes per good frame, as `qc goodonly build` chooses it), then judged on
  jittered copies with synthetic defects painted on (blobs and cuts of the opposite colour,
  3-24 px: made here, no label read). (k, r, min area) with the best F-score on those
  (IoU > 0.33) win. The floor, |frame - aligned template| opened and cut into connected
  components, has its (opening, min area) tuned the same way, its threshold chosen the same way.
- Scoring, on the VAL boards (never seen): each val test image is judged against a model built
  from its template and `--good` jittered copies; truth boxes are DeepPCB's, classes ignored
  (class-agnostic). Good frames for AUROC and false alarms: one more jittered copy of each
  val template, never used to build.

Reported: class-agnostic mAP50 (COCOeval, over the boxes the model gives), the DeepPCB
F-score (IoU > 0.33), image AUROC, false alarms per good frame, build seconds per part, ms per
frame (CPU time, one thread, alignment included, decoded frame). Writes the `goodonly-deeppcb` section of BENCHMARKS.md.
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import sys
import time
from dataclasses import dataclass, replace
from pathlib import Path

import cv2
import numpy as np
from tqdm import tqdm

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench.common import DEEPPCB
from bench.report import table, write_section
from inspection.data.synth.optics import jitter
from inspection.detect.goodonly import (
    NAMES,
    GoodOnlyModel,
    Params,
    _regions,
    choose_threshold,
    grow,
    outside,
    to_golden,
)
from inspection.detect.reference import Aligned, align
from inspection.detections import Detections

IOU = 0.33  # the DeepPCB paper's criterion
GRID_K = (2.0, 3.0, 4.0)
GRID_R = (0, 1, 2)
GRID_AREA = (4, 8, 16, 32)
GRID_OPEN = (1, 3, 5)  # the floor's opening (1: none)


@dataclass(frozen=True)
class Floor:
    """The thresholded difference: |frame - aligned golden|, grey-opened (the same as opening the
    thresholded mask, for a flat element), connected components of at least `min_area`."""

    opening: int
    min_area: int
    threshold: float = 255.0

    def anomaly(self, frame: np.ndarray, reference: np.ndarray) -> np.ndarray:
        diff = cv2.absdiff(frame, reference)
        if self.opening > 1:
            kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (self.opening, self.opening))
            diff = cv2.morphologyEx(diff, cv2.MORPH_OPEN, kernel)
        return diff.astype(np.float32)

    def judge(self, anomaly: np.ndarray) -> tuple[Detections, float]:
        height, width = anomaly.shape
        boxes, masses = _regions(anomaly, self.threshold, self.min_area)
        least = self.threshold * self.min_area
        _, weak = _regions(anomaly, self.threshold / 2, 1)
        score = float(weak.max() / least) if len(weak) else 0.0
        return Detections(xyxy=boxes, confidence=masses / (masses + least), class_id=np.zeros(len(boxes)),
                          names=NAMES, image_wh=(width, height)), score


# -- data ---------------------------------------------------------------------------------------


def listed(name: str) -> list[Path]:
    return [DEEPPCB / line for line in (DEEPPCB / name).read_text().split()]


def template_of(image: Path) -> Path:
    from inspection.data.formats.yolo import reference_path_for

    found = reference_path_for(image)
    if found is None:
        sys.exit(f"{image}: no template beside it (templates/); see {DEEPPCB / 'README.md'}")
    return found


def truth_of(image: Path) -> np.ndarray:
    from inspection.data.formats.yolo import label_path_for, parse_labels

    label = label_path_for(image, root=DEEPPCB)
    found, _ = parse_labels(label.read_text(), image_wh=(640, 640), names={i: str(i) for i in range(6)},
                            file=str(label))
    assert found is not None
    return found.xyxy


def read_grey(path: Path) -> np.ndarray:
    pixels = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE)
    if pixels is None:
        sys.exit(f"{path}: cannot be read; DeepPCB's copy is damaged")
    return pixels.astype(np.uint8, copy=False)


def board(path: Path) -> str:
    return path.stem[:5]


def spread_pick(paths: list[Path], count: int) -> list[Path]:
    """`count` paths spread evenly over the boards and within each."""
    groups: dict[str, list[Path]] = {}
    for path in paths:
        groups.setdefault(board(path), []).append(path)
    per = max(1, count // len(groups))
    picked = []
    for members in groups.values():
        step = max(1, len(members) // per)
        picked += members[::step][:per]
    return picked[:count]


def paint_defects(frame: np.ndarray, rng: np.random.Generator) -> tuple[np.ndarray, np.ndarray]:
    """1-4 synthetic defects in the opposite colour of the copper or board under them: blobs
    (spurious copper, pin-holes, bites) and thin cuts or bridges. Returns (frame, boxes xyxy)."""
    out = frame.copy()
    height, width = frame.shape
    boxes = []
    edges = cv2.Canny(frame, 50, 150)
    ys, xs = np.nonzero(edges)
    for _ in range(int(rng.integers(1, 5))):
        if len(xs) and rng.random() < 0.7:  # most real defects sit on a trace's edge
            i = int(rng.integers(len(xs)))
            cx, cy = int(xs[i]), int(ys[i])
        else:
            cx, cy = int(rng.integers(20, width - 20)), int(rng.integers(20, height - 20))
        colour = 0 if frame[cy, cx] > 127 else 255
        mask = np.zeros_like(frame)
        if rng.random() < 0.6:
            axes = (int(rng.integers(2, 10)), int(rng.integers(2, 10)))
            cv2.ellipse(mask, (cx, cy), axes, float(rng.uniform(0, 180)), 0, 360, 255, -1)
        else:
            length, angle = rng.uniform(6, 24), rng.uniform(0, np.pi)
            dx, dy = np.cos(angle) * length / 2, np.sin(angle) * length / 2
            cv2.line(mask, (int(cx - dx), int(cy - dy)), (int(cx + dx), int(cy + dy)), 255,
                     int(rng.integers(2, 5)))
        changed = (mask > 0) & (np.abs(out.astype(np.int16) - colour) > 60)
        if changed.sum() < 6:
            continue
        out[mask > 0] = colour
        py, px = np.nonzero(changed)
        boxes.append([px.min(), py.min(), px.max() + 1, py.max() + 1])
    return out, np.array(boxes, np.float32).reshape(-1, 4)


# -- counting -----------------------------------------------------------------------------------


def counts(found: np.ndarray, truth: np.ndarray) -> tuple[int, int, int]:
    """(tp, fp, fn), one-to-one at IoU > 0.33, class-agnostic."""
    from inspection.evaluate.metrics import box_iou

    if not len(found) or not len(truth):
        return 0, len(found), len(truth)
    iou = box_iou(found, truth)
    tp = 0
    used = np.zeros(len(truth), bool)
    for i in np.argsort(-iou.max(axis=1)):
        candidates = np.where(~used & (iou[i] > IOU))[0]
        if len(candidates):
            used[candidates[np.argmax(iou[i, candidates])]] = True
            tp += 1
    return tp, len(found) - tp, len(truth) - tp


def fscore(tp: int, fp: int, fn: int) -> float:
    return 2 * tp / max(1, 2 * tp + fp + fn)


def auroc(good: list[float], bad: list[float]) -> float:
    """Probability that a defective frame scores above a good one (ties count half)."""
    scores = np.array(good + bad)
    order = scores.argsort(kind="mergesort")
    ranks = np.empty(len(scores))
    sorted_scores = scores[order]
    i = 0
    while i < len(scores):  # average ranks over ties
        j = i
        while j + 1 < len(scores) and sorted_scores[j + 1] == sorted_scores[i]:
            j += 1
        ranks[order[i:j + 1]] = (i + j) / 2 + 1
        i = j + 1
    bad_ranks = ranks[len(good):].sum()
    return float((bad_ranks - len(bad) * (len(bad) + 1) / 2) / (len(good) * len(bad)))


# -- tuning on the training boards' templates ------------------------------------------------


@dataclass
class TuningPart:
    golden: np.ndarray
    moved: list[np.ndarray]  # good frames in golden pixels
    painted: list[tuple[np.ndarray, np.ndarray, Aligned]]  # frame, boxes, its alignment


def tuning_parts(templates: list[Path], *, good: int, painted: int, seed: int, workers: int) -> list[TuningPart]:
    from multiprocessing import get_context

    jobs = [(index, path, good, painted, seed) for index, path in enumerate(templates)]
    with get_context("fork").Pool(workers, initializer=cv2.setNumThreads, initargs=(1,)) as pool:
        return list(tqdm(pool.imap(_tuning_part, jobs), total=len(jobs), desc="tuning parts", unit="part",
                         file=sys.stderr))


def _tuning_part(job: tuple) -> TuningPart:
    index, path, good, painted, seed = job
    rng = np.random.default_rng([seed, index])
    golden = read_grey(path)
    moved = [to_golden(jitter(golden, rng), golden)[0] for _ in range(good)]
    frames = []
    for _ in range(painted):
        frame, boxes = paint_defects(jitter(golden, rng), rng)
        frames.append((frame, boxes, align(frame, golden)))
    return TuningPart(golden, moved, frames)


def held_out(moved: list[np.ndarray], share: float) -> list[np.ndarray]:
    """The frames `GoodOnlyModel.fit` holds out, for the floor's threshold."""
    held = max(1, round(len(moved) * share))
    step = len(moved) / held
    return [moved[min(len(moved) - 1, int(i * step + step / 2))] for i in range(held)]


def tune_goodonly(parts: list[TuningPart], base: Params) -> tuple[Params, list[list]]:
    """(k, r, min area) with the best F on the painted frames. The band depends on (k, r) only,
    so it is made once for all min areas; each min area chooses its own threshold."""
    totals = {key: [0, 0, 0] for key in itertools.product(GRID_K, GRID_R, GRID_AREA)}
    for k, r in tqdm(list(itertools.product(GRID_K, GRID_R)), desc="tune good-only", file=sys.stderr):
        for part in parts:
            model = GoodOnlyModel.fit(part.golden, part.moved, params=replace(base, k=k, edge_tolerance=r))
            held = [outside(frame, model.low, model.high) for frame in held_out(part.moved, base.holdout)]
            maps = [model.predict(frame, aligned=aligned).anomaly for frame, _, aligned in part.painted]
            for area in GRID_AREA:
                cut = choose_threshold(held, min_area=area, false_alarms=base.false_alarms)
                for anomaly, (_, boxes, _) in zip(maps, part.painted, strict=True):
                    found, _ = _regions(anomaly, cut, area)
                    for i, n in enumerate(counts(found, boxes)):
                        totals[(k, r, area)][i] += n
    rows: list[list] = [[k, r, area, tp, fp, fn, round(fscore(tp, fp, fn), 3)]
                        for (k, r, area), (tp, fp, fn) in totals.items()]
    best = max(rows, key=lambda row: row[-1])
    return replace(base, k=float(best[0]), edge_tolerance=int(best[1]), min_area=int(best[2])), rows


def tune_floor(parts: list[TuningPart], base: Params) -> tuple[Floor, list[list]]:
    totals = {key: [0, 0, 0] for key in itertools.product(GRID_OPEN, GRID_AREA)}
    for opening in tqdm(GRID_OPEN, desc="tune floor", file=sys.stderr):
        for part in parts:
            floor = Floor(opening, 1)
            held = [floor.anomaly(frame, part.golden) for frame in held_out(part.moved, base.holdout)]
            maps = [floor.anomaly(frame, aligned.reference) for frame, _, aligned in part.painted]
            for area in GRID_AREA:
                cut = choose_threshold(held, min_area=area, false_alarms=base.false_alarms)
                for anomaly, (_, boxes, _) in zip(maps, part.painted, strict=True):
                    found, _ = _regions(anomaly, cut, area)
                    for i, n in enumerate(counts(found, boxes)):
                        totals[(opening, area)][i] += n
    rows: list[list] = [[opening, area, tp, fp, fn, round(fscore(tp, fp, fn), 3)]
                        for (opening, area), (tp, fp, fn) in totals.items()]
    best = max(rows, key=lambda row: row[-1])
    return Floor(int(best[0]), int(best[1])), rows


def floor_for(golden: np.ndarray, moved: list[np.ndarray], *, opening: int, min_area: int,
              base: Params) -> Floor:
    floor = Floor(opening, min_area)
    maps = [floor.anomaly(frame, golden) for frame in held_out(moved, base.holdout)]
    return replace(floor, threshold=choose_threshold(maps, min_area=min_area, false_alarms=base.false_alarms))


# -- scoring on the val boards ----------------------------------------------------------------


@dataclass
class Scored:
    predictions: list[Detections]
    good_boxes: list[int]
    good_scores: list[float]
    bad_scores: list[float]
    ms: list[float]
    build_s: list[float]


def score_val(images: list[Path], params: Params, floor: Floor, *, good: int, seed: int, workers: int
              ) -> tuple[Scored, Scored, list[Detections]]:
    """Each val image judged by both modes, in `workers` processes (image by image; the
    results do not depend on how many)."""
    from multiprocessing import get_context

    ours = Scored([], [], [], [], [], [])
    plain = Scored([], [], [], [], [], [])
    truths = []
    jobs = [(index, image, params, floor, good, seed) for index, image in enumerate(images)]
    with get_context("fork").Pool(workers, initializer=cv2.setNumThreads, initargs=(1,)) as pool:
        for result in tqdm(pool.imap(_score_one, jobs), total=len(jobs), desc="val boards", unit="image",
                           file=sys.stderr):
            truth, per_mode = result
            truths.append(truth)
            for scored, (found, bad_score, good_boxes, good_score, ms, build_s) in zip((ours, plain), per_mode,
                                                                                      strict=True):
                scored.predictions.append(found)
                scored.bad_scores.append(bad_score)
                scored.good_boxes.append(good_boxes)
                scored.good_scores.append(good_score)
                scored.ms += ms
                scored.build_s.append(build_s)
    return ours, plain, truths


def _score_one(job: tuple) -> tuple[Detections, list[tuple]]:
    index, image, params, floor, good, seed = job
    rng = np.random.default_rng([seed, 10_000 + index])
    golden = read_grey(template_of(image))
    frame = read_grey(image)
    good_frames = [jitter(golden, rng) for _ in range(good)]
    started = time.process_time()
    moved = [to_golden(f, golden)[0] for f in good_frames]  # what GoodOnlyModel.build does first
    aligning = time.process_time() - started
    model = GoodOnlyModel.fit(golden, moved, params=params)
    build_ours = time.process_time() - started
    started = time.process_time()
    plain_floor = floor_for(golden, moved, opening=floor.opening, min_area=floor.min_area, base=params)
    build_plain = aligning + time.process_time() - started
    boxes = truth_of(image)
    truth = Detections(xyxy=boxes, confidence=np.ones(len(boxes)), class_id=np.zeros(len(boxes)), names=NAMES,
                       image_wh=(640, 640))
    unseen = jitter(golden, rng)  # a good frame never used to build
    results: dict[str, dict[bool, tuple[Detections, float, float]]] = {"ours": {}, "plain": {}}
    for target, is_good in ((frame, False), (unseen, True)):
        started = time.process_time()
        judged = model.predict(target)
        results["ours"][is_good] = (judged.detections, judged.score, (time.process_time() - started) * 1000)
        started = time.process_time()
        aligned = align(target, golden)
        found, score = plain_floor.judge(plain_floor.anomaly(target, aligned.reference))
        results["plain"][is_good] = (found, score, (time.process_time() - started) * 1000)
    per_mode = []
    for key, build_s in (("ours", build_ours), ("plain", build_plain)):
        bad, good_one = results[key][False], results[key][True]
        per_mode.append((bad[0], bad[1], len(good_one[0]), good_one[1], [bad[2], good_one[2]], build_s))
    return truth, per_mode


def training_box_side() -> int:
    """The median shorter side of the training boards' label boxes: DeepPCB's annotators'
    margin, the one number read from labels (of the training boards, never of val)."""
    sides = [min(box[2] - box[0], box[3] - box[1]) for image in listed("boards-train.txt") for box in truth_of(image)]
    return int(round(statistics.median(sides)))


def summary(scored: Scored, truths: list[Detections], *, min_side: int = 0) -> dict[str, float]:
    from inspection.evaluate.metrics import box_iou, evaluate

    predictions = [grow(found, min_side) for found in scored.predictions]
    result = evaluate(predictions, truths, names=NAMES, deploy_conf=0.5, criterion="deeppcb")
    assert result.deeppcb is not None
    tp = fp = fn = 0
    touched = 0
    for found, truth in zip(predictions, truths, strict=True):
        a, b, c = counts(found.xyxy, truth.xyxy)
        tp, fp, fn = tp + a, fp + b, fn + c
        if len(found) and len(truth):
            touched += int((box_iou(found.xyxy, truth.xyxy) > 0).any(axis=0).sum())
    return {
        "touched": touched / max(1, sum(len(t) for t in truths)),
        "map50": result.map50,
        "precision": result.deeppcb.precision,
        "recall": result.deeppcb.recall,
        "f": result.deeppcb.fscore,
        "fp_per_defective": fp / len(truths),
        "auroc": auroc(scored.good_scores, scored.bad_scores),
        "false_alarms": float(np.mean(scored.good_boxes)),
        "build_s": statistics.median(scored.build_s),
        "ms": statistics.median(scored.ms),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tune-templates", type=int, default=24, help="training-board templates to tune on")
    parser.add_argument("--painted", type=int, default=4, help="painted frames per tuning template")
    parser.add_argument("--good", type=int, default=16, help="good (jittered) frames per part")
    parser.add_argument("--val", type=int, default=200, help="val images to score (of 200)")
    parser.add_argument("--false-alarms", type=float, default=0.1, help="boxes per good frame allowed")
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--workers", type=int, default=2, help="processes judging val images")
    parser.add_argument("--params", help="skip tuning: k,r,min_area,opening,floor_min_area (e.g. from a run before)")
    parser.add_argument("--no-write", action="store_true", help="print, do not write BENCHMARKS.md")
    args = parser.parse_args()
    cv2.setNumThreads(1)  # one core per frame, as a service worker runs it; the other is busy

    base = Params(false_alarms=args.false_alarms)
    train_templates = sorted({template_of(p) for p in listed("boards-train.txt")})
    picked = spread_pick(train_templates, args.tune_templates)
    started = time.perf_counter()
    if args.params:  # tuned before (its grids are not repeated here)
        k, r, area, opening, floor_area = args.params.split(",")
        params = replace(base, k=float(k), edge_tolerance=int(r), min_area=int(area))
        floor = Floor(int(opening), int(floor_area))
        grid: list[list] = []
        floor_grid: list[list] = []
    else:
        parts = tuning_parts(picked, good=args.good, painted=args.painted, seed=args.seed,
                             workers=args.workers)
        params, grid = tune_goodonly(parts, base)
        floor, floor_grid = tune_floor(parts, base)
    tuning_s = time.perf_counter() - started
    print(f"tuned: {params}; floor {floor} ({tuning_s:.0f} s)", file=sys.stderr)

    val = spread_pick(listed("boards-val.txt"), args.val) if args.val < 200 else listed("boards-val.txt")
    ours, plain, truths = score_val(val, params, floor, good=args.good, seed=args.seed, workers=args.workers)
    side = training_box_side()
    a_tight, b_tight = summary(ours, truths), summary(plain, truths)
    a, b = summary(ours, truths, min_side=side), summary(plain, truths, min_side=side)
    for name, s in (("good-only tight", a_tight), ("floor tight", b_tight), ("good-only grown", a),
                    ("floor grown", b)):
        print(name, {k: round(v, 4) for k, v in s.items()}, file=sys.stderr)

    def row(name: str, how: str, s: dict[str, float]) -> list:
        return [name, how, f"{s['map50']:.3f}", f"{s['precision']:.3f}", f"{s['recall']:.3f}", f"{s['f']:.3f}",
                f"{s['touched']:.3f}", f"{s['fp_per_defective']:.2f}", f"{s['auroc']:.3f}",
                f"{s['false_alarms']:.3f}", f"{s['build_s']:.2f}", f"{s['ms']:.1f}"]

    header = ["mode", "tuned on training templates", "mAP50 (agnostic)", "P", "R", "F (IoU>0.33)",
              "truth boxes touched", "false boxes / defective image", "image AUROC",
              "false alarms / good frame", "build CPU s / part", "CPU ms / frame"]
    ours_how = f"k {params.k:g}, r {params.edge_tolerance}, min area {params.min_area}"
    floor_how = f"opening {floor.opening}, min area {floor.min_area}"
    rows = [
        row("good-only band, tight boxes", ours_how, a_tight),
        row("thresholded difference (floor), tight boxes", floor_how, b_tight),
        row(f"good-only band, boxes grown to {side} px", ours_how, a),
        row(f"thresholded difference (floor), boxes grown to {side} px", floor_how, b),
    ]
    goals = [
        ["image AUROC >= 0.97", f"{a['auroc']:.3f}", f"{a['auroc'] - 0.97:+.3f}"],
        ["F >= 0.80 (IoU > 0.33, class-agnostic)", f"{a['f']:.3f}", f"{a['f'] - 0.80:+.3f}"],
        ["F >= floor + 0.10", f"{a['f'] - b['f']:+.3f} over the floor", f"{a['f'] - b['f'] - 0.10:+.3f}"],
        ["<= 0.1 false alarms per good frame", f"{a['false_alarms']:.3f}", f"{0.1 - a['false_alarms']:+.3f}"],
    ]
    body = "\n\n".join([
        "## Good-only model on DeepPCB, unseen boards (issue 23)",
        (f"`nice -n 19 python bench/goodonly/run.py --tune-templates {args.tune_templates} --painted "
        f"{args.painted} --good {args.good} --val {args.val} --false-alarms {args.false_alarms:g}` "
        "(bench/goodonly/run.py). No defect image and no label used to build or tune: "
        + (f"(k, r, min area) given by --params {args.params} (tuned by an earlier run); " if args.params else
           f"(k, r, min area) tuned on {len(picked)} templates of the `boards.yaml` training boards with "
           f"synthetic defects painted on jittered copies ({tuning_s:.0f} s); ")
        + "each val image judged against a model "
        f"built from its template and {args.good} jittered copies (sub-pixel to 2 px shift, exposure, "
        "noise, JPEG), threshold chosen on the held-out share for "
        f"{args.false_alarms:g} false boxes per good frame. Scored on {len(val)} images of the "
        f"`boards.yaml` val boards (never seen), {sum(len(t) for t in truths)} boxes, classes ignored; "
        "good frames for AUROC and false alarms: one unseen jittered copy of each val template. "
        "mAP50 ranks only the boxes the model reports (no sub-threshold candidates). Times are CPU "
        "time of the process (one OpenCV thread), alignment included, the frame already decoded: "
        "the machine was shared with other work, so wall time there says little."),
        table(header, rows),
        (f"Tight boxes hug the anomaly's own pixels; DeepPCB's annotators draw theirs with a margin "
         f"(30-60 px around defects of 5-20), so few tight boxes reach IoU 0.33 although they sit on "
         f"the defects ('truth boxes touched'). Grown: each box grown about its centre to {side} px a "
         f"side and overlapping ones merged (`goodonly.grow`, `qc goodonly build --box-min-side`); "
         f"{side} px is the median shorter side of the training boards' label boxes, the one figure "
         "taken from labels, and of the training boards only. False alarms are counted on tight boxes."),
        "Goals of issue 23 (good-only band, grown boxes):",
        table(["goal", "measured", "met by (+) / missed by (-)"], goals),
        "Tuning grid, good-only band (F on painted training templates):",
        table(["k", "r", "min area", "tp", "fp", "fn", "F"], sorted(grid, key=lambda r: -r[-1])[:8]),
        "Tuning grid, floor:",
        table(["opening", "min area", "tp", "fp", "fn", "F"], sorted(floor_grid, key=lambda r: -r[-1])[:5]),
    ])
    if args.no_write:
        print(body)
    else:
        write_section("goodonly-deeppcb", body)
        print(body)


if __name__ == "__main__":
    main()
