"""A new part judged from its golden part and good frames alone: no defect label, no network,
nothing downloaded (issue 23, item 1).

Example::

    import glob

    import cv2
    from inspection.detect.goodonly import GoodOnlyModel, Params

    golden = cv2.imread("golden.png")
    good = [cv2.imread(p) for p in sorted(glob.glob("good/*.png"))]
    model = GoodOnlyModel.build(golden, good, params=Params(false_alarms=0.1))
    model.save("part.qcgood")
    found = GoodOnlyModel.load("part.qcgood").predict(cv2.imread("frame.png"))
    found.detections            # Detections, one class "anomaly", frame pixels
    found.anomaly               # H x W float32: grey levels outside what good looks like
    found.score                 # image-level anomaly score (for AUROC and sorting)

How it works. Every good frame is aligned with the golden part as the service aligns frames
(`reference.align`: bounded phase correlation) and moved into the golden's pixels. Per pixel,
the mean and spread of the good frames give a band of what good looks like,
[erode(mean - k * spread, r), dilate(mean + k * spread, r)]: k spreads wide enough for sensor
noise and exposure, and the r-pixel erosion/dilation widens it across edges, where a 1-2 pixel
misregistration moves an edge between the frame and the golden (DeepPCB's own test/template
pairs are 0.5-1.7 px apart). A frame to judge is aligned in turn; the band is moved onto the
frame (the golden is warped, never the frame, so boxes stay in frame pixels) and the anomaly
map is how far each pixel lies outside the band. Boxes are its connected regions above a
threshold, of at least `min_area` pixels.

The threshold is chosen, not guessed: a share of the good frames is held out of the
statistics, and the threshold is the lowest whose boxes on those held-out frames stay at or
below `false_alarms` per good frame. A box's confidence is mass / (mass + threshold *
min_area), where mass is the sum of the anomaly map over its pixels: 0.5 for the faintest box
the threshold lets through, towards 1 for large or strong ones.

A `.qcgood` file is a NumPy .npz holding the golden (grey), the band's two edges (uint8, in
the golden's pixels) and a JSON header (format, version, parameters, threshold, how it was
built), written crash-safe (inspection/durable.py). NumPy and OpenCV only.
"""

from __future__ import annotations

import io
import json
import time
import zipfile
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import cv2
import numpy as np

from inspection.detect.reference import Aligned, align, grey
from inspection.detections import Detections
from inspection.durable import write_bytes_atomic
from inspection.errors import ConfigError, ImageError, ModelError

FORMAT = "qc-goodonly"
VERSION = 1
SUFFIX = ".qcgood"
NAMES = {0: "anomaly"}
# Below this many good frames the spread per pixel is noise and no held-out frame is left to
# choose the threshold from.
MIN_GOOD = 4
# Thresholds tried, in grey levels outside the band: fine near the bottom, where the choice
# matters for faint defects, coarser above.
THRESHOLDS = np.unique(np.round(np.geomspace(2, 250, 64), 1)).astype(np.float32)
# Frames whose alignment with the golden scores below this are not this part (or badly lit):
# left out of the statistics, and named.
MIN_ALIGNMENT = 0.3


@dataclass(frozen=True)
class Params:
    """How a good-only model is built.

    Attributes:
        k: the band is mean +- k * spread (spread: standard deviation of the good frames).
        spread_floor: the least spread, in grey levels: sensor noise a few good frames
            may not show.
        edge_tolerance: r, pixels the band is widened by (erode its low edge, dilate its high
            one): how far an edge may move between a good frame and the golden.
        min_area: the least box, in pixels.
        false_alarms: boxes per good frame allowed on the held-out good frames.
        holdout: share of the good frames held out of the statistics to choose the threshold.
        box_min_side: boxes are grown about their centre to at least this many pixels a side,
            and grown boxes that overlap become one (`grow`): the anomaly's own pixels make
            tight boxes, where inspectors draw theirs with a margin (DeepPCB's are 30-60 px
            around defects of 5-20). 0 keeps them tight.
    """

    k: float = 3.0
    spread_floor: float = 4.0
    edge_tolerance: int = 1
    min_area: int = 12
    false_alarms: float = 0.1
    holdout: float = 0.3
    box_min_side: int = 0

    def check(self) -> None:
        problems = []
        if not self.k > 0:
            problems.append(f"k={self.k} (use a value above 0, e.g. 3)")
        if self.spread_floor < 0:
            problems.append(f"spread_floor={self.spread_floor} (use 0 or more)")
        if not 0 <= self.edge_tolerance <= 16:
            problems.append(f"edge_tolerance={self.edge_tolerance} (use 0-16 pixels)")
        if self.min_area < 1:
            problems.append(f"min_area={self.min_area} (use 1 or more pixels)")
        if self.false_alarms < 0:
            problems.append(f"false_alarms={self.false_alarms} (use 0 or more boxes per good frame)")
        if self.box_min_side < 0:
            problems.append(f"box_min_side={self.box_min_side} (use 0 or more pixels)")
        if not 0 < self.holdout < 1:
            problems.append(f"holdout={self.holdout} (use a share between 0 and 1, e.g. 0.3)")
        if problems:
            raise ConfigError("good-only parameters out of range: " + "; ".join(problems))


@dataclass(frozen=True)
class Judged:
    """One frame judged by a good-only model.

    Attributes:
        detections: boxes in frame pixels, class 0 "anomaly", confidence as the module says.
        anomaly: (H, W) float32, grey levels outside the band of good (0 inside it), frame-sized.
        score: the image's anomaly score: the largest mass of any region above half the
            threshold, over the threshold * min_area (1.0 is a box's least; for AUROC).
        alignment: normalised correlation of the frame with the golden after alignment, 0..1.
        shift: (dx, dy) frame pixels that moved the golden onto the frame.
    """

    detections: Detections
    anomaly: np.ndarray
    score: float
    alignment: float
    shift: tuple[float, float]


@dataclass
class GoodOnlyModel:
    """The band of good around a golden part, and the threshold chosen on held-out good frames."""

    golden: np.ndarray  # (H, W) uint8 grey
    low: np.ndarray  # (H, W) uint8, band's low edge in golden pixels
    high: np.ndarray  # (H, W) uint8, band's high edge
    params: Params
    threshold: float
    info: dict[str, Any] = field(default_factory=dict)

    # -- building ---------------------------------------------------------------------------

    @classmethod
    def build(cls, golden: np.ndarray, good: Sequence[np.ndarray], *, params: Params = Params(),
              names: Sequence[str] | None = None,
              progress: Callable[[Iterable[Any]], Iterable[Any]] | None = None) -> GoodOnlyModel:
        """The model of `golden` from the `good` frames (BGR or grey, the golden's size).
        `names` name the frames in errors (default: their index); `progress` wraps the loops
        (e.g. tqdm)."""
        params.check()
        started = time.perf_counter()
        wrap = progress or (lambda items: items)
        labels = list(names) if names is not None else [f"good frame {i}" for i in range(len(good))]
        golden_grey = grey(_checked(golden, "the golden image"))
        if len(good) < MIN_GOOD:
            raise ConfigError(f"{len(good)} good frame(s): a good-only model needs at least {MIN_GOOD} "
                              "(50 is a good start); add good frames of the part")
        moved: list[np.ndarray] = []
        refused: list[str] = []
        for frame, label in wrap(list(zip(good, labels, strict=True))):
            frame_grey = grey(_checked(frame, label))
            if frame_grey.shape != golden_grey.shape:
                raise ImageError(f"{label}: {frame_grey.shape[1]}x{frame_grey.shape[0]} pixels, the golden is "
                                 f"{golden_grey.shape[1]}x{golden_grey.shape[0]}; give frames of the same "
                                 "camera and resolution as the golden")
            on_golden, agreement = to_golden(frame_grey, golden_grey)
            if agreement < MIN_ALIGNMENT:
                refused.append(f"{label} (alignment {agreement:.2f})")
                continue
            moved.append(on_golden)
        if len(moved) < MIN_GOOD:
            raise ConfigError(f"only {len(moved)} good frame(s) align with the golden (left out: "
                              f"{', '.join(refused[:5])}); check that they show the golden's part, lit alike")
        model = cls.fit(golden_grey, moved, params=params)
        model.info.update(good_frames=len(good), left_out=refused,
                          build_seconds=round(time.perf_counter() - started, 3))
        return model

    @classmethod
    def fit(cls, golden_grey: np.ndarray, moved: Sequence[np.ndarray], *, params: Params) -> GoodOnlyModel:
        """The model from good frames already moved into the golden's pixels (`to_golden`):
        what `build` does after aligning. A share (`params.holdout`) is held out of the
        statistics to choose the threshold."""
        params.check()
        held = max(1, round(len(moved) * params.holdout))
        # Every few frames held out, spread over the sequence: light drifts along a shift.
        step = len(moved) / held
        held_index = {min(len(moved) - 1, int(i * step + step / 2)) for i in range(held)}
        fit = [f for i, f in enumerate(moved) if i not in held_index] + [golden_grey]
        low, high = band(fit, params)
        model = cls(golden=golden_grey, low=low, high=high, params=params, threshold=float(THRESHOLDS[-1]))
        maps = [outside(moved[i], low, high) for i in sorted(held_index)]
        model.threshold = choose_threshold(maps, min_area=params.min_area, false_alarms=params.false_alarms)
        model.info = {
            "used": len(moved),
            "fitted": len(fit) - 1,
            "held_out": len(held_index),
            "false_alarms_held_out": round(float(np.mean([
                _count(m, model.threshold, params.min_area) for m in maps])), 4),
            "size": [int(golden_grey.shape[1]), int(golden_grey.shape[0])],
        }
        return model

    # -- judging ----------------------------------------------------------------------------

    def predict(self, frame: np.ndarray, *, threshold: float | None = None,
                aligned: Aligned | None = None) -> Judged:
        """Judge one frame (BGR or grey) against the model. A frame of another size with the
        golden's aspect (a reduced decode) is judged at the golden's size and its boxes scaled
        back. `aligned`: the frame's alignment with the golden when already known (benchmarks
        judging one frame with several models)."""
        frame_grey = grey(_checked(frame, "the frame"))
        height, width = frame_grey.shape
        gh, gw = self.golden.shape
        if (height, width) != (gh, gw):
            if abs(width / height - gw / gh) > 0.01:
                raise ImageError(f"the frame is {width}x{height} pixels and the model's golden {gw}x{gh}: "
                                 "not the same camera view; judge it with this part's own model")
            frame_grey = cv2.resize(frame_grey, (gw, gh), interpolation=cv2.INTER_AREA)
        if aligned is None:
            aligned = align(frame_grey, self.golden)
        warp = np.array([[1, 0, aligned.shift[0]], [0, 1, aligned.shift[1]]], np.float32)
        low = _moved(self.low, warp, border=0)
        high = _moved(self.high, warp, border=255)
        anomaly = outside(frame_grey, low, high)
        cut = self.threshold if threshold is None else float(threshold)
        detections = self._boxes(anomaly, cut)
        score = self._image_score(anomaly)
        if (height, width) != (gh, gw):
            scale = np.array([width / gw, height / gh] * 2, np.float32)
            detections = Detections(xyxy=detections.xyxy * scale, confidence=detections.confidence,
                                    class_id=detections.class_id, names=NAMES, image_wh=(width, height))
            anomaly = cv2.resize(anomaly, (width, height), interpolation=cv2.INTER_LINEAR)
        return Judged(detections=detections, anomaly=anomaly, score=score, alignment=aligned.score,
                      shift=(aligned.shift[0] * width / gw, aligned.shift[1] * height / gh))

    def _boxes(self, anomaly: np.ndarray, cut: float) -> Detections:
        height, width = anomaly.shape
        boxes, masses = _regions(anomaly, cut, self.params.min_area)
        if not len(boxes):
            return Detections.empty(names=NAMES, image_wh=(width, height))
        least = cut * self.params.min_area
        tight = Detections(xyxy=boxes, confidence=masses / (masses + least),
                           class_id=np.zeros(len(boxes), np.int64), names=NAMES, image_wh=(width, height))
        return grow(tight, self.params.box_min_side)

    def _image_score(self, anomaly: np.ndarray) -> float:
        # Half the threshold, so frames with no box still rank by how close they came.
        _, masses = _regions(anomaly, self.threshold / 2, 1)
        return float(masses.max() / (self.threshold * self.params.min_area)) if len(masses) else 0.0

    # -- the file ---------------------------------------------------------------------------

    def header(self) -> dict[str, Any]:
        return {"format": FORMAT, "version": VERSION, "names": {str(k): v for k, v in NAMES.items()},
                "params": asdict(self.params), "threshold": self.threshold, "info": self.info}

    def save(self, path: str | Path) -> Path:
        """Write the model to `path` (crash-safe: the old file or the new, never half)."""
        path = Path(path)
        buffer = io.BytesIO()
        header = np.frombuffer(json.dumps(self.header(), sort_keys=True).encode(), np.uint8)
        np.savez_compressed(buffer, header=header, golden=self.golden, low=self.low, high=self.high)
        write_bytes_atomic(path, buffer.getvalue())
        return path

    @classmethod
    def load(cls, path: str | Path) -> GoodOnlyModel:
        path = Path(path)
        fix = "build it again with qc goodonly build"
        try:
            with np.load(path, allow_pickle=False) as data:
                arrays = {key: data[key] for key in ("header", "golden", "low", "high")}
        except FileNotFoundError:
            raise ModelError(f"{path}: no such good-only model; {fix}") from None
        except (OSError, ValueError, KeyError, zipfile.BadZipFile, EOFError) as error:
            raise ModelError(f"{path}: not a good-only model file ({error}); {fix}") from None
        try:
            header = json.loads(arrays["header"].tobytes().decode())
        except (UnicodeDecodeError, json.JSONDecodeError):
            raise ModelError(f"{path}: its header is not JSON; {fix}") from None
        if not isinstance(header, dict) or header.get("format") != FORMAT:
            kind = header.get("format") if isinstance(header, dict) else None
            raise ModelError(f"{path}: not a good-only model (format {kind!r}); {fix}")
        if header.get("version") != VERSION:
            raise ModelError(f"{path}: good-only model version {header.get('version')!r}, this qc reads "
                             f"version {VERSION}; update qc or {fix}")
        planes = ("golden", "low", "high")
        shapes = {arrays[k].shape for k in planes}
        if len(shapes) != 1 or arrays["golden"].ndim != 2 or any(arrays[k].dtype != np.uint8 for k in planes):
            raise ModelError(f"{path}: its images disagree in size or type; {fix}")
        try:
            params = Params(**header["params"])
            params.check()
            threshold = float(header["threshold"])
        except (TypeError, KeyError, ValueError, ConfigError) as error:
            raise ModelError(f"{path}: bad parameters in its header ({error}); {fix}") from None
        return cls(golden=arrays["golden"], low=arrays["low"], high=arrays["high"], params=params,
                   threshold=threshold, info=dict(header.get("info") or {}))


def is_goodonly_file(path: str | Path) -> bool:
    """Whether `path` names a good-only model (by its suffix: ONNX models go elsewhere)."""
    return Path(path).suffix.lower() == SUFFIX


# -- the pieces ---------------------------------------------------------------------------------


def grow(detections: Detections, min_side: int) -> Detections:
    """Boxes grown about their centres to at least `min_side` pixels a side (within the image),
    then those that overlap merged into their union (the highest confidence kept), until none
    overlap."""
    if min_side <= 0 or not len(detections):
        return detections
    width, height = detections.image_wh
    boxes = detections.xyxy.copy()
    centres = (boxes[:, :2] + boxes[:, 2:]) / 2
    sides = np.maximum(boxes[:, 2:] - boxes[:, :2], min_side)
    boxes = np.concatenate([centres - sides / 2, centres + sides / 2], axis=1)
    boxes = np.clip(boxes, 0, [width, height, width, height]).astype(np.float32)
    groups = [[box, float(score)] for box, score in zip(boxes, detections.confidence, strict=True)]
    merged = True
    while merged:
        merged = False
        for i in range(len(groups)):
            for j in range(i + 1, len(groups)):
                a, b = groups[i][0], groups[j][0]
                if a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]:
                    groups[i] = [np.concatenate([np.minimum(a[:2], b[:2]), np.maximum(a[2:], b[2:])]),
                                 max(groups[i][1], groups[j][1])]
                    del groups[j]
                    merged = True
                    break
            if merged:
                break
    return Detections(xyxy=np.array([g[0] for g in groups], np.float32).reshape(-1, 4),
                      confidence=np.array([g[1] for g in groups], np.float32), class_id=np.zeros(len(groups)),
                      names=detections.names, image_wh=detections.image_wh)


def to_golden(frame_grey: np.ndarray, golden_grey: np.ndarray) -> tuple[np.ndarray, float]:
    """`frame_grey` moved into the golden's pixels (the inverse of the service's alignment, which
    moves the golden onto the frame), and the alignment's score. Where the frame has no pixels
    the golden's own show (no difference there)."""
    aligned = align(frame_grey, golden_grey)
    back = np.array([[1, 0, -aligned.shift[0]], [0, 1, -aligned.shift[1]]], np.float32)
    height, width = golden_grey.shape
    moved = cv2.warpAffine(frame_grey, back, (width, height), flags=cv2.INTER_LINEAR,
                           borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    covered = cv2.warpAffine(np.full_like(frame_grey, 255), back, (width, height), flags=cv2.INTER_NEAREST,
                             borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    return np.where(covered > 0, moved, golden_grey), aligned.score


def band(frames: Sequence[np.ndarray], params: Params) -> tuple[np.ndarray, np.ndarray]:
    """(low, high) uint8 from good frames (H, W) in the golden's pixels."""
    # Running sums in OpenCV: numpy's mean and std over a stacked axis were ten times slower.
    total = np.zeros(frames[0].shape, np.float64)
    squares = np.zeros(frames[0].shape, np.float64)
    for frame in frames:
        cv2.accumulate(frame, total)
        cv2.accumulateSquare(frame, squares)
    mean = total / len(frames)
    variance = np.maximum(squares / len(frames) - mean * mean, 0)
    spread = np.maximum(np.sqrt(variance), params.spread_floor)
    low = np.clip(mean - params.k * spread, 0, 255).astype(np.uint8)
    high = np.clip(mean + params.k * spread, 0, 255).astype(np.uint8)
    r = params.edge_tolerance
    if r:
        kernel = cv2.getStructuringElement(cv2.MORPH_ELLIPSE, (2 * r + 1, 2 * r + 1))
        low = cv2.erode(low, kernel)
        high = cv2.dilate(high, kernel)
    return low, high


def outside(frame_grey: np.ndarray, low: np.ndarray, high: np.ndarray) -> np.ndarray:
    """Grey levels by which each pixel lies outside [low, high] (0 inside), float32."""
    above = cv2.subtract(frame_grey, high)  # saturating uint8: 0 where frame <= high
    below = cv2.subtract(low, frame_grey)
    return cv2.max(above, below).astype(np.float32)


def choose_threshold(maps: Sequence[np.ndarray], *, min_area: int, false_alarms: float) -> float:
    """The lowest of THRESHOLDS whose boxes on `maps` (anomaly maps of good frames) number
    at most `false_alarms` per map. Searched by bisection: fewer regions pass a higher
    threshold (a region may split in two as the threshold rises, so this is nearly, not
    strictly, monotone; bisection then lands on one of the thresholds that keep to the rate)."""
    allowed = false_alarms * len(maps)

    def keeps(cut: float) -> bool:
        count = 0
        for anomaly in maps:
            count += _count(anomaly, cut, min_area)
            if count > allowed:
                return False
        return True

    low, high = 0, len(THRESHOLDS) - 1
    if not keeps(float(THRESHOLDS[high])):
        return float(THRESHOLDS[high])
    while low < high:  # the first index that keeps to the rate
        middle = (low + high) // 2
        if keeps(float(THRESHOLDS[middle])):
            high = middle
        else:
            low = middle + 1
    return float(THRESHOLDS[low])


def _count(anomaly: np.ndarray, cut: float, min_area: int) -> int:
    mask = (anomaly > cut).astype(np.uint8)
    if not mask.any():
        return 0
    _, _, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    return int((stats[1:, cv2.CC_STAT_AREA] >= min_area).sum())


def _regions(anomaly: np.ndarray, cut: float, min_area: int) -> tuple[np.ndarray, np.ndarray]:
    """Boxes (N, 4) xyxy and masses (N,) of the 8-connected regions above `cut` with at least
    `min_area` pixels."""
    mask = (anomaly > cut).astype(np.uint8)
    if not mask.any():
        return np.zeros((0, 4), np.float32), np.zeros(0, np.float32)
    count, labels, stats, _ = cv2.connectedComponentsWithStats(mask, connectivity=8)
    keep = np.flatnonzero(stats[1:, cv2.CC_STAT_AREA] >= min_area) + 1
    if not len(keep):
        return np.zeros((0, 4), np.float32), np.zeros(0, np.float32)
    masses = np.bincount(labels.ravel(), weights=anomaly.ravel(), minlength=count)[keep].astype(np.float32)
    x, y = stats[keep, cv2.CC_STAT_LEFT], stats[keep, cv2.CC_STAT_TOP]
    w, h = stats[keep, cv2.CC_STAT_WIDTH], stats[keep, cv2.CC_STAT_HEIGHT]
    return np.stack([x, y, x + w, y + h], axis=1).astype(np.float32), masses


def _moved(image: np.ndarray, warp: np.ndarray, *, border: int) -> np.ndarray:
    if not warp[:, 2].any():
        return image
    height, width = image.shape
    # Nearest, not linear: the band's edges are already widened by r; interpolating would
    # narrow a one-pixel band at an edge.
    return cv2.warpAffine(image, warp, (width, height), flags=cv2.INTER_NEAREST,
                          borderMode=cv2.BORDER_CONSTANT, borderValue=border)


def _checked(image: object, label: str) -> np.ndarray:
    if not isinstance(image, np.ndarray):
        raise ImageError(f"{label}: {type(image).__name__} is not an image; give a decoded camera frame "
                         "(cv2.imread)")
    if image.dtype != np.uint8 or image.ndim not in (2, 3) \
            or (image.ndim == 3 and image.shape[2] not in (1, 3)) or min(image.shape[:2]) < 16:
        described = f"{image.dtype} {image.shape}"
        raise ImageError(f"{label}: {described} is not an 8-bit grey or BGR image of at least 16x16 "
                         "pixels; give a decoded camera frame (cv2.imread)")
    if image.ndim == 3 and image.shape[2] == 1:
        return image[:, :, 0]
    return image


def overlay(frame: np.ndarray, judged: Judged, *, threshold: float) -> np.ndarray:
    """The frame (BGR) with its anomaly map over it in warm colours (full strength at twice the
    threshold; nothing where the map is 0) and its boxes drawn: for people to look at."""
    from inspection.detect.drawing import draw

    image = frame if frame.ndim == 3 else cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR)
    layer = heat(judged.anomaly, threshold=threshold)
    alpha = layer[..., 3:].astype(np.float32) / 255
    blended = (image.astype(np.float32) * (1 - alpha) + layer[..., :3].astype(np.float32) * alpha).astype(np.uint8)
    return draw(blended, judged.detections)


def heat(anomaly: np.ndarray, *, threshold: float) -> np.ndarray:
    """The anomaly map as a BGRA layer to lay over its frame: warm colours, opaque up to 70 %
    at twice the threshold, transparent where the map is 0 (the review page's overlay, and
    `overlay`'s)."""
    strength = np.clip(anomaly / max(2 * threshold, 1e-6), 0, 1)
    colours = cv2.applyColorMap((strength * 255).astype(np.uint8), cv2.COLORMAP_INFERNO)
    alpha = np.rint(0.7 * 255 * strength).astype(np.uint8)
    return np.dstack([colours, alpha])
