"""Judging a frame against its golden part: align the reference to the frame, then build the
network's input from both.

Example::

    import cv2
    from inspection.detect.reference import InputContract, align, compose

    frame, golden = cv2.imread("frame.png"), cv2.imread("golden.png")
    aligned = align(frame, golden)                  # the reference moved onto the frame
    aligned.score, aligned.shift                    # 0..1 agreement; (dx, dy) frame pixels
    network_input = compose(frame, aligned.reference)   # H x W x 3: frame, reference, |diff|

A reference model (exported from a recipe with `reference: true`) sees three planes where a
plain one sees blue, green and red: the frame in grey, the aligned reference in grey, and
their absolute difference. What differs from the golden part stands out in the third plane
whatever the board looks like, which is why such models carry to boards never trained on
(DeepPCB: published ~99 mAP with the template as input). The layout is an ordinary 3-channel
image, so Ultralytics trains on it unchanged: its geometric augmentation moves all three
planes together, as frame and reference must move (see training/reference_data.py).

The reference is warped, never the frame, so boxes stay in frame pixels. Translation comes
from phase correlation (~20 ms at 640 on 2 cores, ../shared/MEASURED.md's budget); `motion`
"euclidean" refines rotation with ECC at the same reduced size. `score` is the normalised
correlation of the aligned pair at that size: a frame that does not match its reference (the
wrong product, a part out of its fixture, a covered lens) scores low, and the service judges
it REVIEW, never PASS.

The model's `qc_input` metadata (written by `qc export`) says which input it expects:
`InputContract.from_metadata`.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import Any

import cv2
import numpy as np

from inspection.errors import ModelError

# Estimation runs at most this many pixels on the long side: phase correlation and ECC cost
# grows with the area, and a 5-megapixel frame is aligned as well at 640 (shift scaled back).
ALIGN_MAX_SIDE = 640
# The largest shift searched, as a share of the long side. A fixture holds a part within a few
# millimetres; an unbounded search on a periodic board (DeepPCB 00041029) found a 292-pixel
# "match" scoring 0.73 where the true shift was 8.
MAX_SHIFT = 0.1
CHANNELS = ("frame", "reference", "absdiff")


class Motion(StrEnum):
    """How the reference may move against the frame."""

    TRANSLATION = "translation"
    EUCLIDEAN = "euclidean"  # translation and rotation


@dataclass(frozen=True)
class InputContract:
    """What a model takes: the frame alone (plain) or frame and reference, and how aligned."""

    reference: bool = False
    channels: tuple[str, ...] = ("blue", "green", "red")
    motion: Motion = Motion.TRANSLATION

    @classmethod
    def plain(cls) -> InputContract:
        return cls()

    @classmethod
    def with_reference(cls, motion: Motion | str = Motion.TRANSLATION) -> InputContract:
        return cls(reference=True, channels=CHANNELS, motion=Motion(motion))

    def to_metadata(self) -> dict[str, Any]:
        return {"reference": self.reference, "channels": list(self.channels), "motion": self.motion.value}

    @classmethod
    def from_metadata(cls, value: Any) -> InputContract:
        """The contract from a model's `qc_input` metadata (absent: plain)."""
        if value is None or value == "":
            return cls.plain()
        fix = "export the model again with qc export"
        if not isinstance(value, dict):
            raise ModelError(f"metadata qc_input={value!r} is not an input contract; {fix}")
        if not value.get("reference"):
            return cls.plain()
        channels = tuple(value.get("channels") or ())
        if channels != CHANNELS:
            raise ModelError(f"metadata qc_input channels {list(channels)}: this qc composes "
                             f"{list(CHANNELS)}; update qc or {fix}")
        try:
            motion = Motion(value.get("motion", Motion.TRANSLATION))
        except ValueError:
            raise ModelError(f"metadata qc_input motion {value.get('motion')!r}: use one of "
                             f"{', '.join(Motion)}; {fix}") from None
        return cls(reference=True, channels=channels, motion=motion)


@dataclass(frozen=True)
class Aligned:
    """A reference warped onto a frame.

    Attributes:
        reference: the reference in grey, frame-sized, warped onto the frame; where it has no
            pixels (shifted in from outside), the frame's own grey (no difference there).
        shift: (dx, dy) in frame pixels that moved the reference onto the frame.
        angle: degrees of rotation applied (0 for translation).
        score: normalised correlation of the aligned pair at the estimation size, 0..1.
    """

    reference: np.ndarray
    shift: tuple[float, float]
    angle: float
    score: float

    @property
    def shift_px(self) -> float:
        return float(np.hypot(*self.shift))


def grey(image: np.ndarray) -> np.ndarray:
    return image if image.ndim == 2 else cv2.cvtColor(image, cv2.COLOR_BGR2GRAY)


def fit_reference(reference: np.ndarray, frame_hw: tuple[int, int]) -> np.ndarray:
    """The reference in grey at the frame's size (a frame decoded at 1/2 or 1/4 gets a
    reference shrunk alike)."""
    reference = grey(reference)
    height, width = frame_hw
    if reference.shape[:2] != (height, width):
        reference = cv2.resize(reference, (width, height), interpolation=cv2.INTER_AREA)
    return reference


def align(frame: np.ndarray, reference: np.ndarray, *, motion: Motion | str = Motion.TRANSLATION,
          max_side: int = ALIGN_MAX_SIDE, max_shift: float = MAX_SHIFT) -> Aligned:
    """Warp `reference` (BGR or grey, any size of the same aspect) onto `frame`, searching
    shifts up to `max_shift` of the long side."""
    frame_grey = grey(frame)
    height, width = frame_grey.shape[:2]
    ref_grey = fit_reference(reference, (height, width))
    scale = min(1.0, max_side / max(height, width))
    if scale < 1.0:
        size = (max(round(width * scale), 1), max(round(height * scale), 1))
        small_frame = cv2.resize(frame_grey, size, interpolation=cv2.INTER_AREA)
        small_ref = cv2.resize(ref_grey, size, interpolation=cv2.INTER_AREA)
    else:
        small_frame, small_ref = frame_grey, ref_grey
    a = small_ref.astype(np.float32)
    b = small_frame.astype(np.float32)
    dx, dy = phase_shift(a, b, limit=max(1, round(max_shift * max(a.shape))))
    # warp: reference pixel (x, y) lands on frame pixel (x + dx, y + dy)
    warp = np.array([[1, 0, dx], [0, 1, dy]], np.float32)
    angle = 0.0
    if Motion(motion) is Motion.EUCLIDEAN:
        warp, angle = _refine_euclidean(b, a, warp)
    full = warp.copy()
    full[:, 2] /= scale
    aligned = _warp(ref_grey, frame_grey, full)
    small_aligned = _warp(small_ref, small_frame, warp)
    return Aligned(reference=aligned, shift=(float(full[0, 2]), float(full[1, 2])), angle=angle,
                   score=_correlation(small_frame, small_aligned))


def phase_shift(a: np.ndarray, b: np.ndarray, *, limit: int) -> tuple[float, float]:
    """(dx, dy) with b(x, y) ~ a(x - dx, y - dy), |dx|, |dy| <= `limit`.

    OpenCV's phase correlation first (packed real spectra: 9 ms at 640 here, against 30 ms for
    complex ones); its peak is the highest of the whole surface, so when it lies within the
    limit it is also the highest within it. Otherwise the surface is searched within the limit
    (`_bounded_shift`)."""
    window = cv2.createHanningWindow((a.shape[1], a.shape[0]), cv2.CV_32F)
    (dx, dy), _ = cv2.phaseCorrelate(a, b, window)
    if abs(dx) <= limit and abs(dy) <= limit:
        return float(dx), float(dy)
    return _bounded_shift(a * window, b * window, limit=limit)


def _bounded_shift(a: np.ndarray, b: np.ndarray, *, limit: int) -> tuple[float, float]:
    """The peak of the phase correlation surface within `limit`, refined to a fraction of a
    pixel by its 3x3 centroid."""
    spectrum_a = cv2.dft(a, flags=cv2.DFT_COMPLEX_OUTPUT)
    spectrum_b = cv2.dft(b, flags=cv2.DFT_COMPLEX_OUTPUT)
    cross = cv2.mulSpectrums(spectrum_b, spectrum_a, 0, conjB=True)
    magnitude = cv2.magnitude(cross[..., 0], cross[..., 1]) + 1e-9
    cross = cross / magnitude[..., None]
    surface = np.fft.fftshift(cv2.idft(cross, flags=cv2.DFT_REAL_OUTPUT | cv2.DFT_SCALE))
    height, width = surface.shape
    cy, cx = height // 2, width // 2
    ly, lx = min(limit, cy - 1), min(limit, cx - 1)
    near = surface[cy - ly:cy + ly + 1, cx - lx:cx + lx + 1]
    iy, ix = np.unravel_index(int(np.argmax(near)), near.shape)
    py, px = cy - ly + iy, cx - lx + ix
    patch = np.clip(surface[max(py - 1, 0):py + 2, max(px - 1, 0):px + 2], 0, None)
    total = float(patch.sum())
    if total > 0:
        ys, xs = np.mgrid[max(py - 1, 0):py + 2, max(px - 1, 0):px + 2][:, :patch.shape[0], :patch.shape[1]]
        fy, fx = float((ys * patch).sum() / total), float((xs * patch).sum() / total)
    else:
        fy, fx = float(py), float(px)
    return fx - cx, fy - cy


def _refine_euclidean(frame: np.ndarray, reference: np.ndarray, warp: np.ndarray) -> tuple[np.ndarray, float]:
    # ECC finds W with reference(W(x)) ~ frame(x); start from the inverse of the shift found.
    inverse = np.array([[1, 0, -warp[0, 2]], [0, 1, -warp[1, 2]]], np.float32)
    criteria = (cv2.TERM_CRITERIA_EPS | cv2.TERM_CRITERIA_COUNT, 60, 1e-5)
    try:
        _, inverse = cv2.findTransformECC(frame, reference, inverse, cv2.MOTION_EUCLIDEAN, criteria,
                                          None, 5)  # type: ignore[call-overload]  # the stubs lack a None mask
    except cv2.error:
        return warp, 0.0  # ECC did not converge: keep the translation, the score will tell
    forward = cv2.invertAffineTransform(inverse).astype(np.float32)
    angle = float(np.degrees(np.arctan2(forward[1, 0], forward[0, 0])))
    return forward, angle


def _warp(reference: np.ndarray, frame: np.ndarray, warp: np.ndarray) -> np.ndarray:
    height, width = frame.shape[:2]
    if not warp[:, 2].any() and np.allclose(warp[:, :2], np.eye(2)):
        return reference
    moved = cv2.warpAffine(reference, warp, (width, height), flags=cv2.INTER_LINEAR,
                           borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    covered = cv2.warpAffine(np.full(reference.shape[:2], 255, np.uint8), warp, (width, height),
                             flags=cv2.INTER_NEAREST, borderMode=cv2.BORDER_CONSTANT, borderValue=0)
    return np.where(covered > 0, moved, frame)


def _correlation(a: np.ndarray, b: np.ndarray) -> float:
    x = a.astype(np.float32).ravel()
    y = b.astype(np.float32).ravel()
    x -= x.mean()
    y -= y.mean()
    norm = float(np.sqrt((x @ x) * (y @ y)))
    if norm == 0.0:  # a flat frame or reference: nothing to align on
        return 0.0
    return max(0.0, float(x @ y) / norm)


def compose(frame: np.ndarray, aligned_reference: np.ndarray) -> np.ndarray:
    """The reference model's input: planes (frame grey, reference grey, |frame - reference|),
    in the order an image read by cv2 has (its blue, green, red)."""
    frame_grey = grey(frame)
    reference = fit_reference(aligned_reference, frame_grey.shape[:2])
    return cv2.merge([frame_grey, reference, cv2.absdiff(frame_grey, reference)])
