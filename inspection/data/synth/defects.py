"""What each defect class looks like, drawn so that its label is exact.

Example::

    >>> import numpy as np
    >>> from inspection.data.synth.defects import CLASS_NAMES, DRAWERS
    >>> from inspection.data.synth.surfaces import render_surface
    >>> rng = np.random.default_rng(3)
    >>> canvas = render_surface("metal", rng, width=320, height=320)
    >>> stamp = DRAWERS[2](canvas, rng)          # a crack
    >>> CLASS_NAMES[stamp.class_id], stamp.box == stamp.extent()
    ('crack', True)
    >>> stamp.apply(canvas.image)

A drawer returns a `Stamp`: an alpha mask and the pixels to blend in through it, cut to the
pixels the defect really changes. Its box is therefore the tight box of changed pixels, and the
label cannot drift from the picture. A drawer returns None when its try came out too faint (a
dark crack on a dark coating); the caller tries again elsewhere.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import cv2
import numpy as np

from inspection.data.synth.surfaces import SHIFT, Canvas, fixed, smooth_noise

CLASS_NAMES = {0: "scratch", 1: "dent", 2: "crack", 3: "particle", 4: "missing"}
SCRATCH, DENT, CRACK, PARTICLE, MISSING = range(5)

# A pixel counts as changed when the blend moves it by at least this many grey levels (0-255);
# fainter fringes are dropped from the mask, so the box ends where the defect can be seen.
MIN_CHANGE = 6.0
# A defect whose changed pixels move by less than this on average is too faint to learn.
MIN_CONTRAST = 22.0
MIN_PIXELS = 12


@dataclass(frozen=True, eq=False)
class Stamp:
    """One defect ready to paint: `alpha` (h, w) blends `paint` (h, w, 3) in at (x0, y0)."""

    class_id: int
    x0: int
    y0: int
    alpha: np.ndarray
    paint: np.ndarray
    feature: int | None = None  # the canvas feature a `missing` defect takes away

    @property
    def box(self) -> tuple[int, int, int, int]:
        """x0, y0, x1, y1 in pixels; x1 and y1 are exclusive (the right and bottom edges)."""
        h, w = self.alpha.shape
        return self.x0, self.y0, self.x0 + w, self.y0 + h

    def extent(self) -> tuple[int, int, int, int]:
        """The box recomputed from the mask, for checking that `box` is tight."""
        ys, xs = np.nonzero(self.alpha > 0)
        return (self.x0 + int(xs.min()), self.y0 + int(ys.min()),
                self.x0 + int(xs.max()) + 1, self.y0 + int(ys.max()) + 1)

    def mask(self, width: int, height: int) -> np.ndarray:
        """The changed pixels as a boolean (height, width) image."""
        full = np.zeros((height, width), bool)
        x0, y0, x1, y1 = self.box
        full[y0:y1, x0:x1] = self.alpha > 0
        return full

    def apply(self, image: np.ndarray) -> None:
        """Blend the defect into `image` (float32 BGR) in place."""
        x0, y0, x1, y1 = self.box
        view = image[y0:y1, x0:x1]
        view += self.alpha[..., None] * (self.paint - view)


def make_stamp(
    class_id: int,
    image: np.ndarray,
    x0: int,
    y0: int,
    alpha: np.ndarray,
    paint: np.ndarray,
    *,
    feature: int | None = None,
) -> Stamp | None:
    """Cut a drawn defect down to the pixels it visibly changes; None if it is too faint."""
    h, w = alpha.shape
    paint = np.clip(paint, 0, 255).astype(np.float32)
    view = image[y0:y0 + h, x0:x0 + w]
    change = alpha * np.abs(paint - view).max(axis=2)
    on = change >= MIN_CHANGE
    if np.count_nonzero(on) < MIN_PIXELS or change[on].mean() < MIN_CONTRAST:
        return None
    rows, cols = np.flatnonzero(on.any(axis=1)), np.flatnonzero(on.any(axis=0))
    r0, r1, c0, c1 = rows[0], rows[-1] + 1, cols[0], cols[-1] + 1
    alpha = np.where(on, alpha, 0).astype(np.float32)[r0:r1, c0:c1]
    return Stamp(class_id, x0 + int(c0), y0 + int(r0), np.ascontiguousarray(alpha),
                 np.ascontiguousarray(paint[r0:r1, c0:c1]), feature)


# --- helpers ------------------------------------------------------------------------------------


def _window(canvas: Canvas, points: np.ndarray, pad: float) -> tuple[int, int, int, int] | None:
    lo, hi = points.min(axis=0) - pad, points.max(axis=0) + pad
    return canvas.clip((lo[0], lo[1], hi[0], hi[1]))


def _centre(canvas: Canvas, rng: np.random.Generator) -> np.ndarray:
    """Anywhere, bar a thin border: a defect may run off the frame, but not start outside it."""
    border = 0.03 * canvas.unit
    return rng.uniform((border, border), (canvas.width - border, canvas.height - border))


def _brightness(canvas: Canvas, box) -> float:
    x0, y0, x1, y1 = box
    return float(canvas.image[y0:y1, x0:x1].mean())


def _grid(box) -> tuple[np.ndarray, np.ndarray]:
    x0, y0, x1, y1 = box
    return (np.arange(y0, y1, dtype=np.float32)[:, None] + 0.5,
            np.arange(x0, x1, dtype=np.float32)[None, :] + 0.5)


def _polyline_alpha(box, paths, thickness) -> np.ndarray:
    """Antialiased polylines drawn into an alpha mask of `box`'s size."""
    x0, y0, x1, y1 = box
    mask = np.zeros((y1 - y0, x1 - x0), np.uint8)
    for path, width in zip(paths, thickness, strict=True):
        cv2.polylines(mask, [fixed(path - (x0, y0))], False, 255, max(1, int(round(width))),
                      cv2.LINE_AA, SHIFT)
    return mask.astype(np.float32) / 255


# --- the five classes ---------------------------------------------------------------------------


def scratch(canvas: Canvas, rng: np.random.Generator) -> Stamp | None:
    """A thin, gently curved line, bright where it catches the light or dark where it doesn't,
    fading out at both ends."""
    s = canvas.unit / 640
    length = rng.uniform(0.07, 0.24) * canvas.unit
    start = _centre(canvas, rng)
    angle = rng.uniform(0, 2 * math.pi)
    end = start + length * np.array([math.cos(angle), math.sin(angle)])
    normal = np.array([-math.sin(angle), math.cos(angle)])
    bend = (start + end) / 2 + normal * rng.normal(0, 0.18) * length
    t = np.linspace(0, 1, 48)[:, None]
    path = (1 - t) ** 2 * start + 2 * (1 - t) * t * bend + t ** 2 * end  # quadratic Bezier
    width = rng.uniform(2.0, 4.0) * s
    box = _window(canvas, path, width + 2)
    if box is None:
        return None
    alpha = _polyline_alpha(box, [path], [width])
    ys, xs = _grid(box)
    # Fade in and out over the first and last fifth, and vary the depth along the way.
    to_end = np.minimum(np.hypot(xs - start[0], ys - start[1]), np.hypot(xs - end[0], ys - end[1]))
    alpha *= np.clip(to_end / (0.2 * length), 0.3, 1.0)
    alpha_h, alpha_w = alpha.shape
    alpha *= 0.75 + 0.25 * smooth_noise(rng, alpha_h, alpha_w, cell=max(4.0, 12 * s)).clip(-1, 1)
    view = canvas.image[box[1]:box[3], box[0]:box[2]]
    level = _brightness(canvas, box)
    bright = rng.random() < (0.85 if level < 100 else 0.35 if level > 170 else 0.6)
    paint = view + rng.uniform(70, 120) if bright else view * rng.uniform(0.25, 0.5)
    return make_stamp(SCRATCH, canvas.image, box[0], box[1], alpha, paint)


def dent(canvas: Canvas, rng: np.random.Generator) -> Stamp | None:
    """A dent or bump, shaded by a light from one side, or a stain spot with a ragged rim."""
    rx = rng.uniform(0.02, 0.065) * canvas.unit
    ry = rx * rng.uniform(0.55, 1.0)
    centre = _centre(canvas, rng)
    reach = max(rx, ry) * 1.3 + 2
    box = _window(canvas, centre[None], reach)
    if box is None:
        return None
    ys, xs = _grid(box)
    phi = rng.uniform(0, math.pi)
    u = (xs - centre[0]) * math.cos(phi) + (ys - centre[1]) * math.sin(phi)
    v = -(xs - centre[0]) * math.sin(phi) + (ys - centre[1]) * math.cos(phi)
    view = canvas.image[box[1]:box[3], box[0]:box[2]]
    if rng.random() < 0.7:
        r2 = (u / rx) ** 2 + (v / ry) ** 2
        inside = np.clip(1 - r2, 0, None)
        # Height (1 - r^2)^2; its slope, lit from `light`, gives the shading.
        du, dv = -4 * u / rx ** 2 * inside, -4 * v / ry ** 2 * inside
        light = rng.uniform(0, 2 * math.pi)
        shade = du * math.cos(light - phi) + dv * math.sin(light - phi)
        shade /= np.abs(shade).max() + 1e-6
        sign = 1 if rng.random() < 0.7 else -1  # dents mostly, bumps sometimes
        delta = sign * rng.uniform(55, 95) * shade - rng.uniform(8, 25) * inside ** 2
        paint = view + delta[..., None]
        alpha = np.clip((1 - r2) / 0.15, 0, 1)
    else:
        theta = np.arctan2(v / ry, u / rx)
        rim = np.ones_like(theta)
        for k in (2, 3, 5):  # a ragged, blotchy outline
            rim += rng.uniform(0.04, 0.12) * np.cos(k * theta + rng.uniform(0, 2 * math.pi))
        r = np.sqrt((u / rx) ** 2 + (v / ry) ** 2) / rim
        alpha = np.clip((1 - r) / 0.2, 0, 1)
        if rng.random() < 0.4:  # a drying ring: darker at the rim
            alpha *= 0.45 + 0.55 * np.clip(r, 0, 1) ** 2
        tone = rng.integers(3)
        if tone == 0:
            paint = view * rng.uniform(0.35, 0.6)
        elif tone == 1:  # rust-brown
            paint = view * 0.45 + np.array((25, 60, 120), np.float32) * rng.uniform(0.8, 1.2)
        else:  # whitish residue
            paint = view * 0.4 + rng.uniform(140, 200)
    return make_stamp(DENT, canvas.image, box[0], box[1], alpha.astype(np.float32), paint)


def crack(canvas: Canvas, rng: np.random.Generator) -> Stamp | None:
    """A dark jagged line that wanders and forks, thinning towards its ends."""
    s = canvas.unit / 640
    length = rng.uniform(0.07, 0.2) * canvas.unit
    step = max(3.0, rng.uniform(3.5, 6.5) * s)

    def walk(start, heading, steps, jag):
        # Short straight runs at sharply changing angles around a slowly drifting course.
        points, course = [np.asarray(start, np.float64)], heading
        for _ in range(steps):
            course += rng.normal(0, 0.08)
            direction = course + rng.normal(0, jag)
            points.append(points[-1] + step * np.array([math.cos(direction), math.sin(direction)]))
        return np.array(points)

    heading = rng.uniform(0, 2 * math.pi)
    steps = max(6, int(length / step))
    trunk = walk(_centre(canvas, rng), heading, steps, rng.uniform(0.35, 0.6))
    width = rng.uniform(2.0, 3.5) * s
    # The middle is widest; the ends, drawn thinner, taper it.
    third = steps // 3
    paths = [trunk[:third + 1], trunk[third:2 * third + 1], trunk[2 * third:]]
    widths = [width * 0.6, width, width * 0.6]
    for _ in range(int(rng.integers(1, 4))):
        at = int(rng.integers(steps // 5, 4 * steps // 5 + 1))
        fork = heading + rng.choice((-1, 1)) * rng.uniform(0.5, 1.1)
        paths.append(walk(trunk[at], fork, max(3, int(steps * rng.uniform(0.2, 0.5))), 0.5))
        widths.append(max(1.0, width * 0.55))
    box = _window(canvas, np.concatenate(paths), width + 2)
    if box is None:
        return None
    alpha = _polyline_alpha(box, paths, widths)
    view = canvas.image[box[1]:box[3], box[0]:box[2]]
    paint = view * rng.uniform(0.05, 0.22)
    return make_stamp(CRACK, canvas.image, box[0], box[1], alpha, paint)


def particle(canvas: Canvas, rng: np.random.Generator) -> Stamp | None:
    """Contamination: a cluster of irregular specks of dust, metal chips or rust, or a fibre."""
    s = canvas.unit / 640
    centre = _centre(canvas, rng)
    if rng.random() < 0.78:
        spread = rng.uniform(0.012, 0.04) * canvas.unit
        count = int(rng.integers(3, 13))
        centres = centre + rng.normal(0, spread / 2, (count, 2))
        radii = rng.uniform(1.5, 4.5, count) * s
        radii[0] = rng.uniform(4, 9) * s  # one bigger piece that the rest broke off
        shapes = []
        for c, r in zip(centres, radii, strict=True):
            corners = int(rng.integers(6, 10))
            angles = np.sort(rng.uniform(0, 2 * math.pi, corners))
            reach = r * rng.uniform(0.55, 1.2, corners)
            shapes.append(c + np.stack([np.cos(angles), np.sin(angles)], -1) * reach[:, None])
        box = _window(canvas, np.concatenate(shapes), 2)
        if box is None:
            return None
        mask = np.zeros((box[3] - box[1], box[2] - box[0]), np.uint8)
        cv2.fillPoly(mask, [fixed(p - box[:2]) for p in shapes], 255, cv2.LINE_AA, SHIFT)
    else:
        length = rng.uniform(0.05, 0.14) * canvas.unit
        t = np.linspace(0, 1, 60)
        heading = rng.uniform(0, 2 * math.pi) + rng.uniform(0.5, 1.3) * np.sin(
            2 * math.pi * rng.uniform(0.8, 2.0) * t + rng.uniform(0, 2 * math.pi)
        )
        steps = np.stack([np.cos(heading), np.sin(heading)], -1) * (length / len(t))
        path = centre + np.cumsum(steps, axis=0)
        width = rng.uniform(1.3, 2.3) * s
        box = _window(canvas, path, width + 2)
        if box is None:
            return None
        mask = np.zeros((box[3] - box[1], box[2] - box[0]), np.uint8)
        cv2.polylines(mask, [fixed(path - box[:2])], False, 255, max(1, int(round(width))),
                      cv2.LINE_AA, SHIFT)
    alpha = mask.astype(np.float32) / 255
    level = _brightness(canvas, box)
    tone = rng.integers(3)
    if tone == 0 and level > 70:
        colour: np.ndarray = np.full(3, rng.uniform(12, 45), np.float32)  # dark dust, fibres, chips
    elif tone == 1:
        colour = np.array((40, 72, 132), np.float32) * rng.uniform(0.8, 1.2)  # rust, resin
    else:
        colour = np.full(3, rng.uniform(205, 250), np.float32)  # bright chips and lint
    paint = np.broadcast_to(colour, (*alpha.shape, 3)) + rng.normal(0, 6, (*alpha.shape, 1))
    return make_stamp(PARTICLE, canvas.image, box[0], box[1], alpha, paint)


def missing(canvas: Canvas, rng: np.random.Generator) -> Stamp | None:
    """A feature that should be there and is not: a pad, via, hole, mark or tab left out, a
    trace cut open, or a void in an electrode's coating. Paints back what lay beneath."""
    unit = canvas.unit
    candidates = [
        f for f in canvas.features
        if f.removable and f.index not in canvas.removed
        and max(f.box[2] - f.box[0], f.box[3] - f.box[1]) >= 0.03 * unit
    ]
    if not candidates:
        return None
    coating = [f for f in candidates if f.kind == "coating"]
    # On foil, a void as often as a missing tab.
    use_coating = coating and rng.random() < 0.5
    feature = coating[0] if use_coating else candidates[int(rng.integers(len(candidates)))]
    fx0, fy0, fx1, fy1 = feature.box
    owned = canvas.owner[fy0:fy1, fx0:fx1] == feature.index
    if feature.kind not in ("trace", "coating"):
        return make_stamp(MISSING, canvas.image, fx0, fy0, owned.astype(np.float32),
                          feature.under, feature=feature.index)
    # Take away a piece around one of its pixels: a cut trace or a void in the coating.
    ys, xs = np.nonzero(owned)
    if len(ys) == 0:
        return None
    pick = int(rng.integers(len(ys)))
    cx, cy = xs[pick] + fx0 + 0.5, ys[pick] + fy0 + 0.5
    if feature.kind == "trace":
        reach = rng.uniform(0.02, 0.05) * unit
    else:
        reach = rng.uniform(0.015, 0.06) * unit
        wobble = (rng.uniform(0, 2 * math.pi, 2), rng.uniform(0.08, 0.2), rng.uniform(0.04, 0.1))
    box = canvas.clip((max(cx - 1.3 * reach, fx0), max(cy - 1.3 * reach, fy0),
                       min(cx + 1.3 * reach, fx1), min(cy + 1.3 * reach, fy1)))
    if box is None:
        return None
    x0, y0, x1, y1 = box
    gy, gx = _grid(box)
    if feature.kind == "trace":
        window = (np.abs(gx - cx) <= reach) & (np.abs(gy - cy) <= reach)
    else:
        theta = np.arctan2(gy - cy, gx - cx)
        phases, a2, a3 = wobble
        rim = reach * (1 + a2 * np.cos(2 * theta + phases[0]) + a3 * np.cos(3 * theta + phases[1]))
        window = np.hypot(gx - cx, gy - cy) <= rim
    owned = (canvas.owner[y0:y1, x0:x1] == feature.index) & window
    under = feature.under[y0 - fy0:y1 - fy0, x0 - fx0:x1 - fx0]
    return make_stamp(MISSING, canvas.image, x0, y0, owned.astype(np.float32), under,
                      feature=feature.index)


Drawer = Callable[[Canvas, np.random.Generator], Stamp | None]
DRAWERS: dict[int, Drawer] = {
    SCRATCH: scratch,
    DENT: dent,
    CRACK: crack,
    PARTICLE: particle,
    MISSING: missing,
}
