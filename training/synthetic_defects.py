"""Synthetic defects made on good frames, for a model trained without one defect label.

Example::

    >>> import numpy as np
    >>> from training.synthetic_defects import Kind, add_defects
    >>> frame = np.full((320, 320, 3), 128, np.uint8)
    >>> frame[100:220, 60:260] = 220                      # a bright pad on a grey part
    >>> rng = np.random.default_rng(0)
    >>> made = add_defects(frame, rng, count=(2, 2), size=(0.06, 0.12))
    >>> made.image.shape == frame.shape, len(made.boxes) >= 1, made.kinds[0] in set(Kind)
    (True, True, True)

Three kinds, each an anomaly the golden part does not have:

- `Kind.NOISE_MASK` (as in DRAEM, Zavrtanik et al. 2021): a mask of blobs thresholded from
  smooth noise, filled with other texture: another place of the same frame turned or
  mirrored, its negative, or a surface the project's synthesiser draws (nothing downloaded).
- `Kind.CUT_PASTE` (as in CutPaste, Li et al. 2021): a rectangle or a thin scar cut from the
  frame itself, turned, and pasted elsewhere, so the anomaly is made of the part's own pixels.
- `Kind.PAINTER`: the project's own defect painters (inspection/data/synth/defects.py:
  scratch, dent, crack, particle), drawn in a window of the frame whose side sets their size.

Each defect's box is the tight box of the pixels it visibly changed (by at least
`MIN_CHANGE` grey levels), so a try that changed nothing (a copper patch pasted on copper) is
undone and tried again elsewhere; boxes are then grown about their centres to `min_box`
pixels a side when asked (inspectors draw theirs with a margin). All defects are labelled
one class, `anomaly`.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from enum import StrEnum

import cv2
import numpy as np

from inspection.data.synth.defects import CRACK, DENT, DRAWERS, PARTICLE, SCRATCH
from inspection.data.synth.surfaces import SURFACES, Canvas, render_surface, smooth_noise

# A pixel belongs to a defect when the defect moved it by at least this many grey levels:
# fainter changes are as much camera noise as anomaly, and the model cannot be asked for them.
MIN_CHANGE = 24
MIN_PIXELS = 8
TRIES = 8  # per defect: a try that changes too little is undone and made elsewhere
PAINTERS = (SCRATCH, DENT, CRACK, PARTICLE)  # `missing` needs the synthesiser's own features


class Kind(StrEnum):
    """How a synthetic defect is made."""

    NOISE_MASK = "noise_mask"
    CUT_PASTE = "cut_paste"
    PAINTER = "painter"


@dataclass(frozen=True, eq=False)
class Defective:
    """A good frame with synthetic defects: `boxes` (n, 4) xyxy pixels, one per defect."""

    image: np.ndarray
    boxes: np.ndarray
    kinds: tuple[Kind, ...]


def add_defects(frame: np.ndarray, rng: np.random.Generator, *, count: tuple[int, int] = (1, 3),
                size: tuple[float, float] = (0.03, 0.15), kinds: tuple[Kind, ...] = tuple(Kind),
                min_box: int = 0) -> Defective:
    """`frame` (uint8, grey or BGR) with between `count[0]` and `count[1]` synthetic defects,
    each about `size` (a share of the shorter side) across, of `kinds` chosen at random."""
    if not kinds:
        raise ValueError("kinds is empty: name at least one of " + ", ".join(Kind))
    grey = frame.ndim == 2
    image = np.ascontiguousarray(cv2.cvtColor(frame, cv2.COLOR_GRAY2BGR) if grey else frame).copy()
    height, width = image.shape[:2]
    unit = min(height, width)
    boxes: list[tuple[int, int, int, int]] = []
    made: list[Kind] = []
    place = Placer(image, rng)
    for _ in range(int(rng.integers(count[0], count[1] + 1))):
        for _ in range(TRIES):
            kind = kinds[int(rng.integers(len(kinds)))]
            extent = max(6.0, float(rng.uniform(*size)) * unit)
            before = image.copy()
            MAKERS[kind](image, rng, extent, place)
            box = _changed_box(before, image)
            if box is None or any(_overlap(box, other) for other in boxes):
                image = before  # too faint, or on another defect: its box would not be its own
                continue
            boxes.append(box)
            made.append(kind)
            break
    out = cv2.cvtColor(image, cv2.COLOR_BGR2GRAY) if grey else image
    array = np.array([_grown(box, min_box, width, height) for box in boxes], np.float32).reshape(-1, 4)
    return Defective(out, array, tuple(made))


# --- the three kinds ---------------------------------------------------------------------------


def noise_mask(image: np.ndarray, rng: np.random.Generator, extent: float, place: Placer) -> None:
    """DRAEM: blobs thresholded from smooth noise in a window `extent` across, filled with
    other texture at an opacity of 0.6-1."""
    side = int(round(extent))
    x0, y0 = place(side)
    h, w = min(side, image.shape[0] - y0), min(side, image.shape[1] - x0)
    noise = smooth_noise(rng, h, w, cell=max(3.0, side / rng.uniform(2.5, 5.0)))
    ys, xs = np.mgrid[0:h, 0:w].astype(np.float32)
    # A round falloff keeps the blobs inside the window, so the defect stays local.
    radius = np.hypot((xs - w / 2) / (w / 2), (ys - h / 2) / (h / 2))
    mask = ((noise - 2.0 * np.clip(radius - 0.6, 0, None)) > rng.uniform(0.3, 1.0)).astype(np.float32)
    mask = cv2.GaussianBlur(mask, (0, 0), 0.7)
    fill = _other_texture(image, rng, x0, y0, w, h)
    opacity = float(rng.uniform(0.6, 1.0))
    view = image[y0:y0 + h, x0:x0 + w].astype(np.float32)
    alpha = (mask * opacity)[..., None]
    image[y0:y0 + h, x0:x0 + w] = np.clip(view + alpha * (fill - view) + 0.5, 0, 255).astype(np.uint8)


def cut_paste(image: np.ndarray, rng: np.random.Generator, extent: float, place: Placer) -> None:
    """CutPaste: a rectangle (or a thin scar) of the frame's own pixels, turned and pasted
    elsewhere, its brightness nudged."""
    height, width = image.shape[:2]
    if rng.random() < 0.5:  # a patch
        aspect = math.exp(rng.uniform(math.log(0.3), math.log(3.3)))
        pw, ph = extent * math.sqrt(aspect), extent / math.sqrt(aspect)
    else:  # a scar: long and thin
        pw, ph = extent, rng.uniform(2.0, max(2.5, extent / 6))
    pw, ph = max(2, min(int(pw), width - 2)), max(2, min(int(ph), height - 2))
    sx, sy = int(rng.integers(0, width - pw + 1)), int(rng.integers(0, height - ph + 1))
    patch = image[sy:sy + ph, sx:sx + pw].astype(np.float32)
    patch = patch * rng.uniform(0.9, 1.1) + rng.uniform(-10, 10)
    # Turn the patch about its centre inside a square canvas that holds it at any angle.
    side = int(math.ceil(math.hypot(pw, ph))) + 2
    canvas: np.ndarray = np.zeros((side, side, 3), np.float32)
    mask: np.ndarray = np.zeros((side, side), np.float32)
    ox, oy = (side - pw) // 2, (side - ph) // 2
    canvas[oy:oy + ph, ox:ox + pw] = patch
    mask[oy:oy + ph, ox:ox + pw] = 1
    turn = cv2.getRotationMatrix2D((side / 2, side / 2), float(rng.uniform(0, 360)), 1.0)
    canvas = cv2.warpAffine(canvas, turn, (side, side), flags=cv2.INTER_LINEAR)
    mask = cv2.warpAffine(mask, turn, (side, side), flags=cv2.INTER_LINEAR)
    x0, y0 = place(side)
    h, w = min(side, height - y0), min(side, width - x0)
    view = image[y0:y0 + h, x0:x0 + w].astype(np.float32)
    alpha = mask[:h, :w, None]
    image[y0:y0 + h, x0:x0 + w] = np.clip(view + alpha * (canvas[:h, :w] - view) + 0.5, 0, 255).astype(np.uint8)


def painter(image: np.ndarray, rng: np.random.Generator, extent: float, place: Placer) -> None:
    """One of the project's painters, drawn on a window of the frame: they size a defect by
    the canvas (a scratch is 7-24 % of its side), so the window is about 6 times `extent`."""
    side = int(min(*image.shape[:2], max(32.0, 6 * extent)))
    x0, y0 = place(side)
    canvas = Canvas(image[y0:y0 + side, x0:x0 + side].astype(np.float32), "plain")
    stamp = DRAWERS[PAINTERS[int(rng.integers(len(PAINTERS)))]](canvas, rng)
    if stamp is None:
        return
    stamp.apply(canvas.image)
    image[y0:y0 + side, x0:x0 + side] = np.clip(canvas.image + 0.5, 0, 255).astype(np.uint8)


Maker = Callable[[np.ndarray, np.random.Generator, float, "Placer"], None]
MAKERS: dict[Kind, Maker] = {Kind.NOISE_MASK: noise_mask, Kind.CUT_PASTE: cut_paste, Kind.PAINTER: painter}


# --- helpers -----------------------------------------------------------------------------------


class Placer:
    """Where a defect goes: `place(side)` is the top-left corner of a window `side` across,
    inside the frame. Most windows are centred on an edge of the part (a trace's, a hole's
    rim), where parts fail and where a model must tell a defect from a slightly moved edge;
    the rest anywhere."""

    ON_EDGE = 0.6

    def __init__(self, image: np.ndarray, rng: np.random.Generator) -> None:
        self.height, self.width = image.shape[:2]
        self.rng = rng
        edges = cv2.Canny(cv2.cvtColor(image, cv2.COLOR_BGR2GRAY), 50, 150)
        self.ys, self.xs = np.nonzero(edges)

    def __call__(self, side: int) -> tuple[int, int]:
        rng = self.rng
        high_x, high_y = max(0, self.width - side), max(0, self.height - side)
        if len(self.xs) and rng.random() < self.ON_EDGE:
            i = int(rng.integers(len(self.xs)))
            return (int(np.clip(self.xs[i] - side // 2, 0, high_x)), int(np.clip(self.ys[i] - side // 2, 0, high_y)))
        return int(rng.integers(0, high_x + 1)), int(rng.integers(0, high_y + 1))


def _other_texture(image: np.ndarray, rng: np.random.Generator, x0: int, y0: int, w: int, h: int) -> np.ndarray:
    """What fills a noise mask: another place of this frame (turned or mirrored), the window's
    negative, or a synthetic surface; float32 (h, w, 3)."""
    choice = rng.random()
    if choice < 0.5:
        height, width = image.shape[:2]
        sx, sy = int(rng.integers(0, width - w + 1)), int(rng.integers(0, height - h + 1))
        source = image[sy:sy + h, sx:sx + w]
        source = np.flip(source, axis=int(rng.integers(2))) if rng.random() < 0.5 else source
        if h == w and rng.random() < 0.5:
            source = np.rot90(source, int(rng.integers(1, 4)))
        return source.astype(np.float32)
    if choice < 0.8:
        return 255.0 - image[y0:y0 + h, x0:x0 + w].astype(np.float32)
    surface = render_surface(SURFACES[int(rng.integers(len(SURFACES)))], rng, width=max(w, 64), height=max(h, 64))
    return surface.image[:h, :w].astype(np.float32)


def _changed_box(before: np.ndarray, after: np.ndarray) -> tuple[int, int, int, int] | None:
    """The tight box of the pixels visibly changed; None when fewer than MIN_PIXELS were."""
    changed = cv2.absdiff(before, after).max(axis=2) >= MIN_CHANGE
    if np.count_nonzero(changed) < MIN_PIXELS:
        return None
    rows, cols = np.flatnonzero(changed.any(axis=1)), np.flatnonzero(changed.any(axis=0))
    return int(cols[0]), int(rows[0]), int(cols[-1]) + 1, int(rows[-1]) + 1


def _overlap(a: tuple[int, int, int, int], b: tuple[int, int, int, int]) -> bool:
    return a[0] < b[2] and b[0] < a[2] and a[1] < b[3] and b[1] < a[3]


def _grown(box: tuple[int, int, int, int], side: int, width: int, height: int) -> tuple[float, ...]:
    """`box` grown about its centre to at least `side` pixels each way, inside the frame."""
    x0, y0, x1, y1 = box
    if side <= 0:
        return float(x0), float(y0), float(x1), float(y1)
    cx, cy = (x0 + x1) / 2, (y0 + y1) / 2
    half_w, half_h = max(x1 - x0, side) / 2, max(y1 - y0, side) / 2
    return (max(0.0, cx - half_w), max(0.0, cy - half_h), min(float(width), cx + half_w),
            min(float(height), cy + half_h))
