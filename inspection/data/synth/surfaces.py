"""Industrial surfaces to draw defects on: brushed metal, a PCB, battery electrode foil.

Example::

    >>> import numpy as np
    >>> from inspection.data.synth.surfaces import render_surface
    >>> canvas = render_surface("pcb", np.random.default_rng(0), width=320, height=240)
    >>> canvas.image.shape, canvas.image.dtype.name
    ((240, 320, 3), 'float32')
    >>> sorted({f.kind for f in canvas.features} & {"pad", "trace", "via"})
    ['pad', 'trace', 'via']

A surface is a background plus *features* drawn on it (pads, traces, vias, holes, marks, tabs,
the electrode coating). The canvas remembers what lay beneath each feature and which pixels
each feature still owns, so the `missing` defect can take a feature away again and know exactly
which pixels that changed. Light, blur and noise come later (`optics`), over defects too.

Sizes scale with the shorter image side (`unit`), so a 320 or an 800x600 frame looks like the
640x640 one, only sampled differently.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import cast

import cv2
import numpy as np

SURFACES = ("metal", "pcb", "foil")

# OpenCV takes drawing coordinates in 1/16 pixel (shift=4): thin lines and small circles then
# land between pixels instead of snapping to whole ones.
SHIFT = 4
ONE = 1 << SHIFT

Box = tuple[int, int, int, int]
Colour = tuple[float, float, float]
# A feature's paint: one BGR colour, or a float32 layer the size of the image to copy from.
Paint = Colour | np.ndarray


def fixed(points: np.ndarray | Sequence[float]) -> np.ndarray:
    """Pixel coordinates as OpenCV's fixed-point integers (use with shift=SHIFT)."""
    return np.round(np.asarray(points, np.float64) * ONE).astype(np.int32)


@dataclass(eq=False)
class Feature:
    """One drawn feature. `under` is the canvas in `box` just before the feature was drawn."""

    index: int
    kind: str
    box: Box  # x0, y0, x1, y1; x1 and y1 exclusive
    under: np.ndarray
    removable: bool


class Canvas:
    """A surface being drawn: float32 BGR pixels (0-255), its features, and who owns each pixel."""

    def __init__(self, background: np.ndarray, kind: str) -> None:
        self.image = np.ascontiguousarray(background, dtype=np.float32)
        self.height, self.width = self.image.shape[:2]
        self.kind = kind
        # Index of the feature drawn last at each pixel; -1 for bare background.
        self.owner = np.full((self.height, self.width), -1, np.int32)
        self.features: list[Feature] = []
        # Features that a `missing` defect has already taken away.
        self.removed: set[int] = set()

    @property
    def unit(self) -> float:
        return float(min(self.width, self.height))

    def clip(self, box: Sequence[float]) -> Box | None:
        """`box` rounded outwards and clipped to the image; None when nothing is left."""
        x0 = max(0, math.floor(box[0]))
        y0 = max(0, math.floor(box[1]))
        x1 = min(self.width, math.ceil(box[2]))
        y1 = min(self.height, math.ceil(box[3]))
        return (x0, y0, x1, y1) if x1 > x0 and y1 > y0 else None

    def add(
        self,
        kind: str,
        box: Sequence[float],
        draw: Callable[[np.ndarray, tuple[int, int]], None],
        paints: Paint | Sequence[Paint],
        *,
        removable: bool = True,
    ) -> Feature | None:
        """Draw one feature and remember it.

        `draw(mask, origin)` gets a zeroed uint8 mask the size of the clipped box and the box's
        top-left corner; it writes label 1 where the feature's first paint goes, 2 for the
        second, and so on (a via is a copper ring, label 1, around a dark hole, label 2).
        """
        clipped = self.clip(box)
        if clipped is None:
            return None
        x0, y0, x1, y1 = clipped
        labels = np.zeros((y1 - y0, x1 - x0), np.uint8)
        draw(labels, (x0, y0))
        on = labels > 0
        if not on.any():
            return None
        single = isinstance(paints, np.ndarray) or (paints and np.isscalar(paints[0]))
        layers = [cast(Paint, paints)] if single else cast(Sequence[Paint], paints)
        view = self.image[y0:y1, x0:x1]
        under = view.copy()
        for label, paint in enumerate(layers, start=1):
            where = (labels == label).view(np.uint8)
            if isinstance(paint, np.ndarray):
                source = paint[y0:y1, x0:x1]
            else:
                source = np.empty_like(view)
                source[:] = paint
            cv2.copyTo(source, where, view)  # in place, and much faster than numpy's masking
        index = len(self.features)
        np.copyto(self.owner[y0:y1, x0:x1], index, where=on)
        feature = Feature(index=index, kind=kind, box=clipped, under=under, removable=removable)
        self.features.append(feature)
        return feature


def render_surface(kind: str, rng: np.random.Generator, *, width: int, height: int) -> Canvas:
    """A fresh surface of `kind` (one of SURFACES), drawn from `rng` alone."""
    renderers = {"metal": _metal, "pcb": _pcb, "foil": _foil}
    if kind not in renderers:
        raise ValueError(f"unknown surface {kind!r}; choose one of {', '.join(SURFACES)}")
    return renderers[kind](rng, width, height)


# --- textures ---------------------------------------------------------------------------------


def smooth_noise(rng: np.random.Generator, height: int, width: int, cell: float) -> np.ndarray:
    """Blotchy noise with features about `cell` pixels across, zero mean, unit deviation."""
    cell = max(1.0, cell)
    # Large blotches are shaped at a quarter of the size and scaled up linearly: the cubic
    # step gives them their roundness, and it is the expensive one.
    factor = 4 if cell >= 16 else 1
    h, w = -(-height // factor), -(-width // factor)
    small_cell = cell / factor
    gh, gw = int(h / small_cell) + 3, int(w / small_cell) + 3
    grid = rng.standard_normal((gh, gw), dtype=np.float32)
    size = (max(w, int(gw * small_cell)), max(h, int(gh * small_cell)))
    out = cv2.resize(grid, size, interpolation=cv2.INTER_CUBIC)[:h, :w]
    mean, std = cv2.meanStdDev(out)
    out = (out - np.float32(mean[0, 0])) * np.float32(1 / (std[0, 0] + 1e-6))
    if factor > 1:
        out = cv2.resize(out, (w * factor, h * factor), interpolation=cv2.INTER_LINEAR)
    return out[:height, :width]


def brushed(
    rng: np.random.Generator, height: int, width: int, *, angle: float, stretch: float
) -> np.ndarray:
    """Streaks along `angle` degrees, each a pixel or two wide and `stretch`-ish pixels long.

    Drawn horizontally by stretching a noise grid that is narrow along x, then rotated into
    place: a cheap anisotropic texture. Near 0 or 90 degrees it is drawn only a little larger
    than the image, otherwise on a square large enough for any rotation.
    """
    quarter = round(angle / 90)
    tilt = angle - 90 * quarter
    if quarter % 2:  # draw it lying down, then stand it up
        height, width = width, height
    if abs(tilt) <= 10:
        pad = math.ceil(abs(math.sin(math.radians(tilt))) * max(height, width) / 2) + 2
        sh, sw = height + 2 * pad, width + 2 * pad
    else:
        sh = sw = math.ceil(math.hypot(height, width)) + 4
    columns = max(2, int(sw / max(stretch, 2.0)))
    texture: np.ndarray = cv2.resize(rng.standard_normal((sh, columns), dtype=np.float32), (sw, sh),
                                     interpolation=cv2.INTER_LINEAR)
    # Wider, fainter bands: the grit of the brush changes slowly across the grooves.
    coarse = rng.standard_normal((max(2, sh // 6), max(2, columns // 3)), dtype=np.float32)
    texture += 0.6 * cv2.resize(coarse, (sw, sh), interpolation=cv2.INTER_CUBIC)
    matrix: np.ndarray = cv2.getRotationMatrix2D((sw / 2, sh / 2), -tilt if quarter % 2 else tilt, 1.0)
    matrix[:, 2] += (width / 2 - sw / 2, height / 2 - sh / 2)
    out = cv2.warpAffine(
        texture, matrix, (width, height), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT
    )
    mean, std = cv2.meanStdDev(out)
    out = (out - np.float32(mean[0, 0])) * np.float32(1 / (std[0, 0] + 1e-6))
    return np.ascontiguousarray(out.T) if quarter % 2 else out


def tinted(gray: np.ndarray, bgr: Sequence[float] | np.ndarray) -> np.ndarray:
    """A (H, W) grey level times a BGR colour, as a (H, W, 3) float32 image."""
    gray = np.asarray(gray, np.float32)
    return cv2.merge([gray * np.float32(c) for c in bgr])


def _coords(height: int, width: int) -> tuple[np.ndarray, np.ndarray]:
    ys = np.arange(height, dtype=np.float32)[:, None]
    xs = np.arange(width, dtype=np.float32)[None, :]
    return ys, xs


def _pick(rng: np.random.Generator, options: Sequence, weights: Sequence[float] | None = None):
    if weights is None:
        return options[int(rng.integers(len(options)))]
    p = np.asarray(weights, np.float64)
    return options[int(rng.choice(len(options), p=p / p.sum()))]


def _free(box: Sequence[float], taken: Sequence[Sequence[float]], margin: float) -> bool:
    """True when `box`, grown by `margin`, touches none of `taken`."""
    x0, y0, x1, y1 = box[0] - margin, box[1] - margin, box[2] + margin, box[3] + margin
    return all(x1 <= t[0] or t[2] <= x0 or y1 <= t[1] or t[3] <= y0 for t in taken)


def _inside(box: Sequence[float], width: int, height: int, margin: float) -> bool:
    return (
        box[0] >= margin and box[1] >= margin and box[2] <= width - margin
        and box[3] <= height - margin
    )


def _circle(centre, radius: float, label: int, offset=(0.0, 0.0), scale: float = 1.0):
    """A `draw` step: filled circle, coordinates shifted by the mask's origin."""

    def step(mask: np.ndarray, origin: tuple[int, int]) -> None:
        cx = centre[0] + offset[0] - origin[0]
        cy = centre[1] + offset[1] - origin[1]
        cv2.circle(mask, tuple(fixed((cx, cy))), int(round(radius * scale * ONE)), label, -1,
                   cv2.LINE_8, SHIFT)

    return step


def _steps(*steps: Callable[[np.ndarray, tuple[int, int]], None]):
    def draw(mask: np.ndarray, origin: tuple[int, int]) -> None:
        for step in steps:
            step(mask, origin)

    return draw


def _rect(mask: np.ndarray, origin, box, label: int) -> None:
    corners = np.array([[box[0], box[1]], [box[2], box[1]], [box[2], box[3]], [box[0], box[3]]])
    cv2.fillConvexPoly(mask, fixed(corners - origin), label, cv2.LINE_8, SHIFT)


# --- brushed metal ------------------------------------------------------------------------------

_METAL_TINTS = ((1.04, 1.0, 0.96), (1.0, 1.0, 1.0), (0.96, 1.0, 1.03), (1.06, 1.02, 0.95))


def _metal(rng: np.random.Generator, width: int, height: int) -> Canvas:
    unit = min(width, height)
    ys, xs = _coords(height, width)
    level = rng.uniform(105, 180)
    tint = np.array(_pick(rng, _METAL_TINTS), np.float32) * rng.uniform(0.97, 1.03, 3)
    lengthwise = rng.random() < 0.8  # brushed along the part, as a line camera mostly sees it
    angle = ((0.0 if rng.random() < 0.5 else 90.0) + rng.normal(0, 3)) if lengthwise else rng.uniform(0, 180)
    grain = brushed(rng, height, width, angle=angle, stretch=rng.uniform(40, 160))
    # Brushing smears a light's reflection across the grooves: a band, bright along its centre.
    theta = math.radians(angle)
    along = xs * math.cos(theta) - ys * math.sin(theta)
    centre = rng.uniform(float(along.min()), float(along.max()))
    band = np.exp(-(((along - centre) / (rng.uniform(0.08, 0.3) * unit)) ** 2))
    mottle = smooth_noise(rng, height, width, cell=unit / rng.uniform(3, 8))
    gray = (
        level
        + grain * rng.uniform(5, 11) * (1 + 0.8 * band)
        + band * rng.uniform(20, 70)
        + mottle * rng.uniform(2, 6)
    )
    # Some frames catch the plate's edge against the dark fixture beyond it.
    plate: np.ndarray = np.ones((height, width), bool)
    if rng.random() < 0.3:
        tilt = math.radians(rng.normal(0, 4))
        side = int(rng.integers(4))
        depth = rng.uniform(0.04, 0.18) * unit
        nx, ny = [(math.sin(tilt), math.cos(tilt)), (math.sin(tilt), -math.cos(tilt)),
                  (math.cos(tilt), math.sin(tilt)), (-math.cos(tilt), math.sin(tilt))][side]
        ox, oy = [(width / 2, 0), (width / 2, height), (0, height / 2), (width, height / 2)][side]
        distance = (xs - ox) * nx + (ys - oy) * ny - depth
        chamfer = rng.uniform(2, 6) * unit / 640
        plate = distance > 0
        gray = np.where(distance < -chamfer, rng.uniform(12, 45), gray)
        gray = np.where((distance >= -chamfer) & (distance <= 0), level + 55, gray)
    canvas = Canvas(tinted(np.clip(gray, 0, 255), tint), "metal")

    def on_plate(box: Sequence[float]) -> bool:
        pad = 0.02 * unit
        b = canvas.clip((box[0] - pad, box[1] - pad, box[2] + pad, box[3] + pad))
        if b is None or not _inside(box, width, height, 2):
            return False
        return bool(plate[b[1]:b[3], b[0]:b[2]].all())

    taken: list[Sequence[float]] = []
    light = rng.uniform(0, 2 * math.pi)
    if rng.random() < 0.65:
        _metal_holes(canvas, rng, level, tint, light, taken, on_plate)
    if rng.random() < 0.45:
        _metal_marks(canvas, rng, level, tint, taken, on_plate)
    if rng.random() < 0.4:
        _metal_text(canvas, rng, level, tint, taken, on_plate)
    return canvas


def _grid_origin(rng, size_x, size_y, width, height, margin):
    if size_x > width - 2 * margin or size_y > height - 2 * margin:
        return None
    x = rng.uniform(margin, width - margin - size_x)
    return x, rng.uniform(margin, height - margin - size_y)


def _metal_holes(canvas, rng, level, tint, light, taken, on_plate) -> None:
    """A regular grid of drilled holes: a bright chamfer ring around a dark bore."""
    unit, width, height = canvas.unit, canvas.width, canvas.height
    radius = rng.uniform(0.018, 0.042) * unit
    pitch = radius * rng.uniform(2.8, 4.5)
    cols, rows = int(rng.integers(2, 7)), int(rng.integers(1, 4))
    for _ in range(6):
        origin = _grid_origin(rng, (cols - 1) * pitch + 2 * radius, (rows - 1) * pitch + 2 * radius,
                              width, height, 0.03 * unit)
        if origin is None:
            cols, rows = max(2, cols - 1), max(1, rows - 1)
            continue
        box = (origin[0], origin[1], origin[0] + (cols - 1) * pitch + 2 * radius,
               origin[1] + (rows - 1) * pitch + 2 * radius)
        if on_plate(box) and _free(box, taken, 0.02 * unit):
            break
    else:
        return
    taken.append(box)
    inner = rng.uniform(0.68, 0.82)
    colours = [
        tuple(np.clip((level * 1.2 + 25) * tint, 0, 255)),  # chamfer catches the light
        tuple(rng.uniform(12, 35) * tint),  # the bore
        tuple(level * rng.uniform(0.35, 0.55) * tint),  # the lit side of the bore's wall
    ]
    shift = (math.cos(light) * 0.14 * radius * inner, math.sin(light) * 0.14 * radius * inner)
    for row in range(rows):
        for col in range(cols):
            centre = (origin[0] + radius + col * pitch, origin[1] + radius + row * pitch)
            draw = _steps(
                _circle(centre, radius, 1),
                _circle(centre, radius * inner, 3),
                _circle(centre, radius * inner, 2, offset=shift, scale=0.9),
            )
            canvas.add("hole", (centre[0] - radius - 1, centre[1] - radius - 1,
                                centre[0] + radius + 2, centre[1] + radius + 2), draw, colours)


def _metal_marks(canvas, rng, level, tint, taken, on_plate) -> None:
    """A row of laser-etched fiducials: crosses, rings or squares, evenly spaced."""
    unit = canvas.unit
    size = rng.uniform(0.028, 0.055) * unit
    pitch = size * rng.uniform(1.8, 3.0)
    count = int(rng.integers(3, 7))
    vertical = rng.random() < 0.3
    span = (count - 1) * pitch + size
    sx, sy = (size, span) if vertical else (span, size)
    for _ in range(8):
        origin = _grid_origin(rng, sx, sy, canvas.width, canvas.height, 0.03 * unit)
        if origin is None:
            return
        box = (origin[0], origin[1], origin[0] + sx, origin[1] + sy)
        if on_plate(box) and _free(box, taken, 0.02 * unit):
            break
    else:
        return
    taken.append(box)
    shape = _pick(rng, ("cross", "ring", "square", "dot"))
    colour = tuple(level * rng.uniform(0.3, 0.5) * tint)
    stroke = max(1.0, size * 0.16)
    for k in range(count):
        x = origin[0] + (0 if vertical else k * pitch)
        y = origin[1] + (k * pitch if vertical else 0)
        centre = (x + size / 2, y + size / 2)

        def draw(mask, o, centre=centre, x=x, y=y):
            c = fixed((centre[0] - o[0], centre[1] - o[1]))
            h = size / 2
            if shape == "cross":
                for d in ((h, 0), (0, h)):
                    a = fixed((centre[0] - o[0] - d[0], centre[1] - o[1] - d[1]))
                    b = fixed((centre[0] - o[0] + d[0], centre[1] - o[1] + d[1]))
                    cv2.line(mask, tuple(a), tuple(b), 1, int(round(stroke)), cv2.LINE_8, SHIFT)
            elif shape == "ring":
                cv2.circle(mask, tuple(c), int((h - stroke / 2) * ONE), 1, int(round(stroke)),
                           cv2.LINE_8, SHIFT)
            elif shape == "square":
                _rect(mask, o, (x, y, x + size, y + size), 1)
            else:
                cv2.circle(mask, tuple(c), int(h * 0.7 * ONE), 1, -1, cv2.LINE_8, SHIFT)

        canvas.add("mark", (x - 2, y - 2, x + size + 2, y + size + 2), draw, colour)


def _metal_text(canvas, rng, level, tint, taken, on_plate) -> None:
    """An etched serial number: realism only, never taken away."""
    unit = canvas.unit
    text = f"{_pick(rng, ('SN', 'LOT', 'P/N', 'ID'))} {int(rng.integers(10000, 99999))}-" + (
        _pick(rng, "ABCDEFGHJK")
    )
    scale = unit / 640 * rng.uniform(0.55, 1.0)
    thickness = max(1, int(round(unit / 640 * rng.uniform(1.0, 2.0))))
    (tw, th), base = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, thickness)
    for _ in range(8):
        origin = _grid_origin(rng, tw, th + base, canvas.width, canvas.height, 0.03 * unit)
        if origin is None:
            return
        box = (origin[0], origin[1], origin[0] + tw, origin[1] + th + base)
        if on_plate(box) and _free(box, taken, 0.02 * unit):
            break
    else:
        return
    taken.append(box)

    def draw(mask, o):
        cv2.putText(mask, text, (int(box[0] - o[0]), int(box[1] + th - o[1])),
                    cv2.FONT_HERSHEY_SIMPLEX, scale, 1, thickness, cv2.LINE_8)

    canvas.add("text", box, draw, tuple(level * rng.uniform(0.35, 0.6) * tint), removable=False)


# --- printed circuit board -----------------------------------------------------------------------

# Solder-mask colours (BGR) and how often boards come in them.
_MASKS = ((45, 118, 38), (34, 78, 26), (118, 62, 22), (32, 32, 30), (42, 40, 140))
_MASK_WEIGHTS = (0.5, 0.15, 0.12, 0.13, 0.1)
# Pad finishes: tin-lead (HASL) silver, immersion gold (ENIG), bare copper.
_FINISHES = ((182, 184, 188), (70, 172, 212), (72, 118, 198))
_SILK = ((226, 228, 230), (226, 228, 230), (60, 212, 228))


def _pcb(rng: np.random.Generator, width: int, height: int) -> Canvas:
    unit = min(width, height)
    ys, xs = _coords(height, width)
    s = unit / 640 * rng.uniform(0.8, 1.25)  # board scale: how close the camera is
    mask_colour = np.array(_pick(rng, _MASKS, _MASK_WEIGHTS), np.float32)
    mask_colour *= rng.uniform(0.9, 1.1, 3).astype(np.float32)
    # Glass-fibre weave shows faintly through the solder mask.
    period = rng.uniform(6, 12) * s
    weave = np.sin(xs * (2 * math.pi / period)) * np.sin(ys * (2 * math.pi / period))
    mottle = smooth_noise(rng, height, width, cell=unit / rng.uniform(4, 10))
    shade = 1 + 0.05 * mottle + 0.025 * weave
    base = tinted(shade, mask_colour)
    canvas = Canvas(base, "pcb")
    # Copper under the mask lifts its colour; exposed pads show their finish.
    trace_layer = base * rng.uniform(1.25, 1.5) + np.float32(6)
    finish = np.array(_pick(rng, _FINISHES), np.float32) * rng.uniform(0.92, 1.08, 3)
    lumps = smooth_noise(rng, height, width, cell=max(2.0, 3 * s))
    pad_layer = tinted(1 + 0.06 * lumps, finish)
    silk = _pick(rng, _SILK)
    hole = tuple(rng.uniform(10, 30, 3))

    pads, outlines, labels = [], [], []  # pads: (box, round?, outward direction)
    taken: list[Sequence[float]] = []
    margin = 0.02 * unit

    def place(w, h):
        for _ in range(20):
            origin = _grid_origin(rng, w, h, width, height, margin)
            if origin is None:
                return None
            box = (origin[0], origin[1], origin[0] + w, origin[1] + h)
            if _free(box, taken, 10 * s):
                taken.append(box)
                return box
        return None

    # Integrated circuits: one or two rows of rectangular pads.
    for ic in range(int(rng.integers(1, 4))):
        n = int(rng.integers(4, 11))
        pw, ph = rng.uniform(9, 14) * s, rng.uniform(22, 38) * s
        pitch = pw * rng.uniform(1.7, 2.3)
        two_rows = rng.random() < 0.6
        gap = rng.uniform(40, 110) * s if two_rows else 0.0
        length, depth = (n - 1) * pitch + pw, ph * (2 if two_rows else 1) + gap
        vertical = rng.random() < 0.5
        box = place(*((depth, length) if vertical else (length, depth)))
        if box is None:
            continue
        rows = (0, 1) if two_rows else (0,)
        for row in rows:
            for k in range(n):
                a = k * pitch  # along the row
                b = row * (ph + gap)  # across the rows
                outward = -1 if row == 0 else 1
                if vertical:
                    pad = (box[0] + b, box[1] + a, box[0] + b + ph, box[1] + a + pw)
                    pads.append((pad, False, (outward, 0)))
                else:
                    pad = (box[0] + a, box[1] + b, box[0] + a + pw, box[1] + b + ph)
                    pads.append((pad, False, (0, outward)))
        inset = 4 * s
        if two_rows:  # the package body sits between the rows
            body = ((box[0] + ph + inset, box[1] - inset, box[2] - ph - inset, box[3] + inset)
                    if vertical else
                    (box[0] - inset, box[1] + ph + inset, box[2] + inset, box[3] - ph - inset))
        else:
            body = (box[0] - inset, box[1] - inset, box[2] + inset, box[3] + inset)
        outlines.append(body)
        labels.append((f"U{ic + 1}", body))
    # Two-terminal parts: resistors and capacitors.
    for _ in range(int(rng.integers(3, 9))):
        pw, ph = rng.uniform(14, 24) * s, rng.uniform(16, 28) * s
        gap = rng.uniform(10, 30) * s
        vertical = rng.random() < 0.5
        w, h = (ph, 2 * pw + gap) if vertical else (2 * pw + gap, ph)
        box = place(w, h)
        if box is None:
            continue
        if vertical:
            pads.append(((box[0], box[1], box[2], box[1] + pw), False, (0, -1)))
            pads.append(((box[0], box[3] - pw, box[2], box[3]), False, (0, 1)))
        else:
            pads.append(((box[0], box[1], box[0] + pw, box[3]), False, (-1, 0)))
            pads.append(((box[2] - pw, box[1], box[2], box[3]), False, (1, 0)))
        inset = 5 * s
        outlines.append((box[0] - inset, box[1] - inset, box[2] + inset, box[3] + inset))
        labels.append((f"{_pick(rng, 'RC')}{int(rng.integers(1, 60))}", box))
    # A pin header: a row of round through-hole pads.
    if rng.random() < 0.5:
        n = int(rng.integers(3, 9))
        r = rng.uniform(11, 17) * s
        pitch = r * rng.uniform(2.4, 3.0)
        vertical = rng.random() < 0.5
        length = (n - 1) * pitch + 2 * r
        box = place(*((2 * r, length) if vertical else (length, 2 * r)))
        if box is not None:
            for k in range(n):
                cx = box[0] + r + (0 if vertical else k * pitch)
                cy = box[1] + r + (k * pitch if vertical else 0)
                direction = (1, 0) if vertical else (0, 1)
                pads.append(((cx - r, cy - r, cx + r, cy + r), True, direction))

    # Traces leave some pads, bend by 45 degrees and often end in a via.
    traces, vias = [], []
    for pad, _, direction in pads:
        if rng.random() > 0.55:
            continue
        cx, cy = (pad[0] + pad[2]) / 2, (pad[1] + pad[3]) / 2
        tw = min(rng.uniform(4, 8) * s, 0.6 * min(pad[2] - pad[0], pad[3] - pad[1]))
        heading = math.atan2(direction[1], direction[0])
        points = [(cx, cy)]
        x, y = cx, cy
        for leg in range(int(rng.integers(2, 4))):
            run = rng.uniform(15, 60) * s if leg == 0 else rng.uniform(30, 170) * s
            x, y = x + run * math.cos(heading), y + run * math.sin(heading)
            points.append((x, y))
            heading += _pick(rng, (-1, 0, 1)) * math.pi / 4
        traces.append((points, tw))
        if rng.random() < 0.5:
            vias.append(((x, y), rng.uniform(7, 11) * s))
    # Buses: bundles of parallel traces crossing the board.
    for _ in range(int(rng.integers(0, 3))):
        count, tw = int(rng.integers(3, 7)), rng.uniform(3.5, 6) * s
        spacing = tw * rng.uniform(2.2, 3.2)
        heading = _pick(rng, (0, 1, 2, 3)) * math.pi / 2
        x, y = rng.uniform(0, width), rng.uniform(0, height)
        route = [(x, y)]
        for _ in range(int(rng.integers(2, 4))):
            run = rng.uniform(0.15, 0.5) * unit
            x, y = x + run * math.cos(heading), y + run * math.sin(heading)
            route.append((x, y))
            heading += _pick(rng, (-1, 1)) * math.pi / 4
        normal = np.array([-math.sin(heading), math.cos(heading)])
        for k in range(count):
            offset = normal * (k - (count - 1) / 2) * spacing
            traces.append(([(px + offset[0], py + offset[1]) for px, py in route], tw))
    vias += [((rng.uniform(0, width), rng.uniform(0, height)), rng.uniform(6, 10) * s)
             for _ in range(int(rng.integers(5, 25)))]

    for points, tw in traces:
        pts = np.array(points)
        box = (*(pts.min(0) - tw), *(pts.max(0) + tw))

        def draw_trace(mask, o, pts=pts, tw=tw):
            cv2.polylines(mask, [fixed(pts - o)], False, 1, max(1, int(round(tw))), cv2.LINE_8,
                          SHIFT)

        canvas.add("trace", box, draw_trace, trace_layer)
    for pad, round_, _ in pads:
        if round_:
            centre, r = ((pad[0] + pad[2]) / 2, (pad[1] + pad[3]) / 2), (pad[2] - pad[0]) / 2
            draw = _steps(_circle(centre, r, 1), _circle(centre, r * 0.45, 2))
            canvas.add("pad", (pad[0] - 1, pad[1] - 1, pad[2] + 1, pad[3] + 1), draw,
                       [pad_layer, hole])
        else:
            def draw_pad(mask: np.ndarray, o: tuple[int, int], pad: Sequence[float] = pad) -> None:
                _rect(mask, o, pad, 1)

            canvas.add("pad", pad, draw_pad, pad_layer)
    tented = rng.random() < 0.4  # vias covered by solder mask show as a raised ring only
    for centre, r in vias:
        if not _free((centre[0] - r, centre[1] - r, centre[0] + r, centre[1] + r), taken, 2 * s):
            continue
        draw = _steps(_circle(centre, r, 1), _circle(centre, r * 0.45, 2))
        ring = trace_layer if tented else pad_layer
        canvas.add("via", (centre[0] - r - 1, centre[1] - r - 1, centre[0] + r + 2,
                           centre[1] + r + 2), draw, [ring, hole])
    stroke = max(1, int(round(2 * s)))
    for body in outlines:
        def draw_outline(mask, o, body=body):
            cv2.rectangle(mask, tuple(fixed(body[:2] - np.array(o))),
                          tuple(fixed(body[2:] - np.array(o))), 1, stroke, cv2.LINE_8, SHIFT)

        canvas.add("silkscreen", (body[0] - 3, body[1] - 3, body[2] + 3, body[3] + 3), draw_outline,
                   silk, removable=False)
    for text, near in labels:
        scale = 0.45 * s
        (tw, th), _ = cv2.getTextSize(text, cv2.FONT_HERSHEY_SIMPLEX, scale, stroke)
        x, y = near[0], near[1] - 6 * s
        if y - th < 0:
            y = near[3] + th + 6 * s

        def draw_label(mask, o, text=text, x=x, y=y, scale=scale):
            cv2.putText(mask, text, (int(x - o[0]), int(y - o[1])), cv2.FONT_HERSHEY_SIMPLEX,
                        scale, 1, stroke, cv2.LINE_8)

        canvas.add("silkscreen", (x - 2, y - th - 2, x + tw + 2, y + 6), draw_label, silk,
                   removable=False)
    return canvas


# --- battery electrode foil ----------------------------------------------------------------------


def _foil(rng: np.random.Generator, width: int, height: int) -> Canvas:
    """Coated electrode foil: a dark granular coating on copper (anode) or aluminium (cathode),
    sometimes with the uncoated edge, its tabs and the dark roller beyond in view."""
    unit = min(width, height)
    s = unit / 640
    anode = rng.random() < 0.5
    side = int(rng.integers(4))  # which image side the foil's edge is on, when it shows
    machine = 0.0 if side < 2 else 90.0  # the web runs along its edge
    machine += rng.normal(0, 1.0)

    metal = np.array((74, 126, 200) if anode else (176, 179, 182), np.float32)
    metal *= rng.uniform(0.9, 1.08, 3).astype(np.float32)
    streaks = brushed(rng, height, width, angle=machine, stretch=rng.uniform(80, 200))
    sheen = smooth_noise(rng, height, width, cell=unit / rng.uniform(2, 5))
    foil_layer = tinted(1 + 0.05 * streaks + 0.08 * sheen, metal)

    level = rng.uniform(48, 72) if anode else rng.uniform(34, 50)
    coat_tint = np.array((1.03, 1.0, 0.97) if anode else (1.0, 1.0, 1.0), np.float32)
    grain: np.ndarray = cv2.GaussianBlur(rng.standard_normal((height, width), dtype=np.float32), (0, 0), 0.8)
    grain *= rng.uniform(5, 9) / 0.35  # blurring white noise at sigma 0.8 leaves ~0.35 of its std
    granules = (rng.random((height, width), dtype=np.float32) < 0.004).astype(np.float32)
    granules = cv2.GaussianBlur(granules, (0, 0), 0.7) * rng.uniform(60, 110)
    calender = brushed(rng, height, width, angle=machine, stretch=rng.uniform(150, 400))
    mottle = smooth_noise(rng, height, width, cell=unit / rng.uniform(3, 8))
    coat = level + grain + granules + 2.5 * calender + 3.5 * mottle
    coat_layer = tinted(np.clip(coat, 0, 255), coat_tint)

    edge = rng.random() < 0.65
    if not edge:
        canvas = Canvas(foil_layer, "foil")
        canvas.add("coating", (0, 0, width, height), lambda mask, o: mask.fill(1), coat_layer)
        return canvas

    # Work in edge coordinates: `a` along the edge, `v` inwards from the image side.
    length = width if side < 2 else height

    def to_image(a: np.ndarray, v: np.ndarray) -> np.ndarray:
        if side == 0:
            return np.stack([a, v], -1)
        if side == 1:
            return np.stack([a, height - v], -1)
        if side == 2:
            return np.stack([v, a], -1)
        return np.stack([width - v, a], -1)

    tab_depth = rng.uniform(0.06, 0.13) * unit
    foil_edge = tab_depth + rng.uniform(0.01, 0.05) * unit
    bare = rng.uniform(0.05, 0.14) * unit
    a = np.linspace(-4, length + 4, 64)
    wobble = smooth_noise(rng, 1, 64, cell=rng.uniform(6, 16))[0]
    coat_edge = foil_edge + bare + wobble * rng.uniform(1, 4) * s
    far = max(width, height) * 2

    background = rng.uniform(12, 35) if rng.random() < 0.85 else rng.uniform(80, 115)
    roller = smooth_noise(rng, height, width, cell=unit / 4)
    image = tinted(background + 4 * roller, (1, 1, 1))
    body = np.zeros((height, width), np.uint8)
    polygon = to_image(np.array([-4, length + 4, length + 4, -4]),
                       np.array([foil_edge, foil_edge, far, far]))
    cv2.fillPoly(body, [fixed(polygon)], 1, cv2.LINE_8, SHIFT)
    cv2.copyTo(foil_layer, body, image)
    canvas = Canvas(image, "foil")

    # Tabs: evenly spaced strips of bare foil sticking out of the edge.
    tab_width = rng.uniform(0.07, 0.15) * unit
    period = tab_width * rng.uniform(2.2, 4.0)
    start = rng.uniform(-period, 0)
    while start < length:
        quad = to_image(np.array([start, start + tab_width, start + tab_width, start]),
                        np.array([foil_edge - tab_depth] * 2 + [foil_edge + 2] * 2))
        lo, hi = quad.min(0), quad.max(0)

        def draw(mask, o, quad=quad):
            cv2.fillConvexPoly(mask, fixed(quad - o), 1, cv2.LINE_8, SHIFT)

        canvas.add("tab", (*lo, *hi), draw, foil_layer)
        start += period

    coated = to_image(np.concatenate([a, a[::-1]]), np.concatenate([coat_edge, np.full(64, far)]))

    def draw_coating(mask, o):
        cv2.fillPoly(mask, [fixed(coated - o)], 1, cv2.LINE_8, SHIFT)

    canvas.add("coating", (0, 0, width, height), draw_coating, coat_layer)
    return canvas
