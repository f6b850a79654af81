"""Cheap per-frame image statistics, and a per-frame image-quality check.

Example::

    >>> import numpy as np
    >>> from inspection.analytics.image_stats import QualitySettings, check_quality, image_stats
    >>> frame = np.full((480, 640, 3), 20, np.uint8)            # a frame with the light off
    >>> stats = image_stats(frame)
    >>> round(stats.brightness), round(stats.sharpness)
    (20, 0)
    >>> quality = QualitySettings(min_brightness=40, max_brightness=220, min_sharpness=15)
    >>> print(check_quality(stats, quality))
    image quality: too dark (brightness 20 < 40): check the lighting and the exposure

What is measured, and why:

- brightness: mean luma (BT.601, 0-255); contrast: standard deviation of luma.
- sharpness: variance of the Laplacian of luma, a standard focus measure: edges lose their
  second derivative first when a lens defocuses. It is computed on a fixed REDUCED_SIDE x
  REDUCED_SIDE reduction of every frame, so the figure does not depend on the camera's
  resolution (the Laplacian of a 4x larger image of the same scene is far weaker) and costs
  about a millisecond on a 640x640 frame (bench/analytics/run.py measures it).
- blue, green, red: the mean of each channel (frames are BGR, as OpenCV decodes them).

Note that multiplying the light by g multiplies contrast by g and sharpness by g^2; the drift
diagnosis (drift.py) corrects for it before blaming the lens.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import astuple, dataclass
from enum import StrEnum

import cv2
import numpy as np
from pydantic import BaseModel, ConfigDict, Field, model_validator

# 256 keeps a mild defocus visible (a Gaussian blur of sigma 1 px at 640 px still reads as a
# clear loss of sharpness at 256, where at 128 it would mostly vanish in the reduction).
REDUCED_SIDE = 256


class Statistic(StrEnum):
    """The per-frame statistics, in the column order of `ImageStats.as_array` and `stack`."""

    BRIGHTNESS = "brightness"
    CONTRAST = "contrast"
    SHARPNESS = "sharpness"
    BLUE = "blue"
    GREEN = "green"
    RED = "red"

    @property
    def column(self) -> int:
        return list(Statistic).index(self)


@dataclass(frozen=True)
class ImageStats:
    """One frame's statistics (see the module's docstring for their definitions)."""

    brightness: float
    contrast: float
    sharpness: float
    blue: float
    green: float
    red: float

    def __getitem__(self, statistic: Statistic) -> float:
        return getattr(self, Statistic(statistic).value)

    def as_array(self) -> np.ndarray:
        return np.array(astuple(self), np.float64)


def reduce(image: np.ndarray, side: int = REDUCED_SIDE) -> np.ndarray:
    """`image` reduced to side x side (the whole frame, stretched): area averaging by a whole
    factor, then bilinear for the last, fractional step."""
    height, width = image.shape[:2]
    # An integer reduction first: OpenCV's area resampling has a fast path for whole factors,
    # which on a 2448x2048 frame halves the cost; the last, fractional step is then small.
    factor = min(height, width) // side
    if factor >= 2:
        image = cv2.resize(image, (width // factor, height // factor), interpolation=cv2.INTER_AREA)
    if image.shape[:2] != (side, side):
        # The last step shrinks by less than 2x (or stretches a small frame), where bilinear
        # interpolation barely aliases: OpenCV's fractional area resampling took 0.55 of the
        # 0.65 ms this function spent on a 640x640 frame, bilinear 0.05 (AMD EPYC, one thread;
        # BENCHMARKS.md, issue 16).
        image = cv2.resize(image, (side, side), interpolation=cv2.INTER_LINEAR)
    return image


def image_stats(image: np.ndarray) -> ImageStats:
    """Statistics of one frame: (H, W, 3) uint8 BGR, or (H, W) uint8 grey."""
    image = np.asarray(image)
    if image.dtype != np.uint8 or image.ndim not in (2, 3) or (
            image.ndim == 3 and image.shape[2] != 3) or min(image.shape[:2]) < 1:
        # Any size the service accepts is measured, a 1x1 frame too: it is stretched to the
        # reduced side like any other (and reads as blurred, which it is).
        raise ValueError(f"expected an (H, W, 3) BGR or (H, W) grey uint8 frame, got "
                         f"{image.dtype.name} {image.shape}")
    small = reduce(image)
    if small.ndim == 2:
        luma = small
        blue = green = red = float(cv2.mean(small)[0])  # type: ignore[index]  # cv2's stub: a 4-tuple
    else:
        luma = cv2.cvtColor(small, cv2.COLOR_BGR2GRAY)
        blue, green, red, _ = cv2.mean(small)  # type: ignore[misc]
    mean, std = cv2.meanStdDev(luma)
    # 16-bit integers hold a 3x3 Laplacian of 8-bit luma exactly, at half the float's cost.
    _, laplacian_std = cv2.meanStdDev(cv2.Laplacian(luma, cv2.CV_16S))
    return ImageStats(brightness=float(mean[0, 0]), contrast=float(std[0, 0]),
                      sharpness=float(laplacian_std[0, 0]) ** 2,
                      blue=float(blue), green=float(green), red=float(red))


def stack(stats: Sequence[ImageStats]) -> np.ndarray:
    """Many frames' statistics as an (N, len(Statistic)) array, columns as `Statistic`."""
    if not stats:
        return np.empty((0, len(Statistic)))
    return np.stack([s.as_array() for s in stats])


# -- per-frame quality ------------------------------------------------------------------------


class QualityProblem(StrEnum):
    TOO_DARK = "too dark"
    TOO_BRIGHT = "too bright"
    BLURRED = "blurred"


class QualitySettings(BaseModel):
    """Thresholds of the per-frame image-quality check. All explicit: what is dark or blurred
    depends on the part, the light and the lens, so each station sets its own (read the
    station's `image_stats` over a good shift and set them well outside that range).
    """

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)
    min_brightness: float = Field(ge=0, le=255, description="mean luma below this: too dark")
    max_brightness: float = Field(ge=0, le=255, description="mean luma above this: too bright")
    min_sharpness: float = Field(ge=0, description="Laplacian variance below this: blurred")

    @model_validator(mode="after")
    def _ordered(self) -> QualitySettings:
        if self.min_brightness >= self.max_brightness:
            raise ValueError(f"min_brightness ({self.min_brightness}) must be below "
                             f"max_brightness ({self.max_brightness})")
        return self


@dataclass(frozen=True)
class QualityIssue:
    """Why a frame cannot be judged. `str(issue)` is the reason a rule records."""

    problem: QualityProblem
    reason: str

    def __str__(self) -> str:
        return self.reason


def check_quality(stats: ImageStats, settings: QualitySettings) -> QualityIssue | None:
    """The frame's quality problem, or None when it can be judged.

    Checked in this order because a dark frame also has weak edges: it is reported as dark
    (the light is the fix), not as blurred (which would send someone to the lens).
    """
    if stats.brightness < settings.min_brightness:
        return QualityIssue(QualityProblem.TOO_DARK,
                            f"image quality: too dark (brightness {stats.brightness:.0f} < "
                            f"{settings.min_brightness:g}): check the lighting and the exposure")
    if stats.brightness > settings.max_brightness:
        return QualityIssue(QualityProblem.TOO_BRIGHT,
                            f"image quality: too bright (brightness {stats.brightness:.0f} > "
                            f"{settings.max_brightness:g}): check the exposure and for glare")
    if stats.sharpness < settings.min_sharpness:
        return QualityIssue(QualityProblem.BLURRED,
                            f"image quality: blurred (sharpness {stats.sharpness:.1f} < "
                            f"{settings.min_sharpness:g}): check the focus, the lens and for "
                            "motion")
    return None
