"""The camera's part: uneven light, a little blur, sensor noise, then 8-bit pixels.

Example::

    >>> import numpy as np
    >>> from inspection.data.synth.optics import expose
    >>> scene = np.full((120, 160, 3), 128, np.float32)
    >>> frame = expose(scene, np.random.default_rng(0))
    >>> frame.shape, frame.dtype.name
    ((120, 160, 3), 'uint8')

Light acts by multiplying, so it never moves a defect's edge; blur spreads edges by a pixel or
two at most (sigma <= 1.1), which is all a label's box may be off by.
"""

from __future__ import annotations

import math
from statistics import NormalDist

import cv2
import numpy as np

# Standard normal quantiles of 256 equally likely bins: a random byte looked up here is a
# Gaussian sample, four times faster than asking numpy for float ones (it matters at 1.2M).
_GAUSS = np.array([NormalDist().inv_cdf((i + 0.5) / 256) for i in range(256)], np.float32)
_GAUSS /= _GAUSS.std()


def lighting(rng: np.random.Generator, height: int, width: int) -> np.ndarray:
    """A smooth gain field around 1: a gradient, vignetting, sometimes a hot spot."""
    # Computed on a small grid and scaled up: light varies slowly, and this keeps it cheap.
    gh = 32
    gw = max(2, int(round(gh * width / height)))
    y = np.linspace(-1, 1, gh, dtype=np.float32)[:, None]
    x = np.linspace(-1, 1, gw, dtype=np.float32)[None, :] * (width / height)
    direction = rng.uniform(0, 2 * math.pi)
    field = 1 + rng.uniform(0, 0.25) * (x * math.cos(direction) + y * math.sin(direction))
    r2 = (x / max(1.0, width / height)) ** 2 + y ** 2
    field = field * (1 - rng.uniform(0, 0.35) * r2 / 2)
    if rng.random() < 0.45:
        cx, cy = rng.uniform(-1, 1) * width / height, rng.uniform(-1, 1)
        sigma = rng.uniform(0.15, 0.45)
        field = field + rng.uniform(0.1, 0.4) * np.exp(-((x - cx) ** 2 + (y - cy) ** 2)
                                                       / (2 * sigma ** 2))
    field = field * rng.uniform(0.85, 1.15)  # exposure
    return cv2.resize(field.astype(np.float32), (width, height), interpolation=cv2.INTER_LINEAR)


def expose(scene: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """The frame a camera would record of `scene` (float32 BGR, 0-255), as uint8 BGR."""
    height, width = scene.shape[:2]
    gain = lighting(rng, height, width)
    white_balance = rng.uniform(0.94, 1.06, 3).astype(np.float32)
    # OpenCV multiplies per channel several times faster than numpy broadcasting does.
    image: np.ndarray = cv2.multiply(scene, cv2.merge([gain * w for w in white_balance]))
    image = cv2.GaussianBlur(image, (0, 0), rng.uniform(0.3, 1.1))
    if rng.random() < 0.15:  # the part moved during exposure: a short smear along the line
        kernel = np.zeros((3, 3), np.float32)  # odd, so the smear stays centred on the pixel
        kernel[1, :] = 1 / 3
        if rng.random() < 0.5:
            kernel = kernel.T.copy()
        image = cv2.filter2D(image, -1, kernel)
    # Read noise plus shot noise, which grows with the square root of the signal.
    read = np.float32(rng.uniform(1.5, 4.5))
    shot = np.float32(rng.uniform(0.0, 0.35))
    noise = cv2.LUT(rng.integers(0, 256, size=tuple(image.shape), dtype=np.uint8), _GAUSS)
    spread: np.ndarray = cv2.sqrt(np.maximum(image, 0))
    spread *= shot
    spread += read
    noisy: np.ndarray = cv2.add(image, cv2.multiply(noise, spread))
    noisy += 0.5  # round, not truncate, in the cast below
    return np.clip(noisy, 0, 255, out=noisy).astype(np.uint8)


def jitter(frame: np.ndarray, rng: np.random.Generator, *, max_shift: float = 2.0,
           exposure: float = 0.08, noise: float = 3.0, jpeg: bool = True) -> np.ndarray:
    """Another shot of the same good part as a line camera takes it: the part moved in its
    fixture by up to `max_shift` pixels (sub-pixel too), the exposure a few percent off
    (`exposure`: the gain's spread, with an offset of a third of it in grey levels), sensor
    noise of `noise` grey levels, and a JPEG round trip (quality 80-95) as the camera sends it.
    Used to stand in for good frames where a data set has one golden image per part (DeepPCB)."""
    height, width = frame.shape[:2]
    dx, dy = rng.uniform(-max_shift, max_shift, 2)
    warp = np.array([[1, 0, dx], [0, 1, dy]], np.float32)
    moved = cv2.warpAffine(frame, warp, (width, height), flags=cv2.INTER_LINEAR, borderMode=cv2.BORDER_REFLECT)
    gain = 1 + rng.uniform(-exposure, exposure)
    offset = rng.uniform(-exposure, exposure) * 255 / 3
    shot = moved.astype(np.float32) * np.float32(gain) + np.float32(offset)
    shot += rng.normal(0, noise, shot.shape).astype(np.float32)
    out = np.clip(shot + 0.5, 0, 255).astype(np.uint8)
    if jpeg:
        ok, encoded = cv2.imencode(".jpg", out, [cv2.IMWRITE_JPEG_QUALITY, int(rng.integers(80, 96))])
        decoded = cv2.imdecode(encoded, cv2.IMREAD_UNCHANGED) if ok else None
        if decoded is not None:
            out = decoded.astype(np.uint8, copy=False)
    return out
