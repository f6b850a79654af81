"""Camera and input drift: a recent window of frames against a reference window, per
statistic (PSI and two-sample KS), and a diagnosis in words of what moved.

Example::

    >>> import numpy as np
    >>> from inspection.analytics.drift import DriftSettings, compare_windows
    >>> from inspection.analytics.image_stats import Statistic
    >>> rng = np.random.default_rng(0)
    >>> reference = rng.normal([120, 40, 300, 110, 120, 130], [3, 2, 20, 3, 3, 3], (400, 6))
    >>> recent = rng.normal([120, 40, 300, 110, 120, 130], [3, 2, 20, 3, 3, 3], (100, 6))
    >>> recent[:, Statistic.SHARPNESS.column] *= 0.6                # the lens lost focus
    >>> report = compare_windows(reference, recent, DriftSettings())
    >>> print(report.summary())
    sharpness down 40%: lens or focus
    >>> report.source.value
    'equipment'

How it decides, and why:

- A statistic has drifted when its PSI (binned on the reference's quantiles, so every bin
  holds the same share of the reference) reaches `psi_threshold` AND the KS test rejects
  "same distribution" at `ks_p_value`. PSI measures how much moved; KS how sure that is.
  Either alone misleads: PSI of a small recent window is inflated by noise, and KS over
  thousands of frames calls a 1% wobble significant.
- A drifted statistic is named as a cause only when its median moved by at least
  `min_change` (relative), measured from where its change began. Light is divided out first,
  frame by frame: g times the light gives g times the contrast and channel means and g^2
  times the sharpness, so the lens is judged on sharpness / brightness^2 ("sharpness per
  light" in the report), contrast on contrast / brightness, colour on channel / brightness.
  A darker lamp is then not blamed on the lens, and the per-light figures spread less than
  the raw ones (each part's own light varies), which makes the lens easier to judge.
- Causes in the images are EQUIPMENT (light, lens, camera): fix the station, not the model.
  When the model's confidence distribution moved but no image statistic did, the cause is the
  MODEL's: the parts changed in a way the camera still shows well, so relabel and retrain.
- "since <time>": with the recent frames' times, each finding estimates when its change began
  (the least-squares split of reference + recent into a before and an after).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from inspection.analytics.image_stats import Statistic

CONFIDENCE = "confidence"  # the name of the model-confidence statistic in a DriftReport
ALIGNMENT = "alignment residual"  # 1 - alignment score, at stations judged against a reference


class DriftSettings(BaseModel):
    """Thresholds of the drift comparison. The defaults are the common rules of thumb:

    - psi_bins 10: deciles of the reference.
    - psi_threshold 0.25: PSI < 0.1 is usually read as stable, 0.1-0.25 as a moderate shift,
      above 0.25 as a major one.
    - ks_p_value 0.001: the KS test must reject at this level; small, because a line compares
      windows all day and each comparison is a chance of a false alarm.
    - min_change 0.15: a median must move by 15% (after the light correction) to be named.
    - min_frames 30: fewer frames in either window and the comparison is refused.
    """

    model_config = ConfigDict(extra="forbid", frozen=True, allow_inf_nan=False)
    psi_bins: int = Field(default=10, ge=2, le=100)
    psi_threshold: float = Field(default=0.25, gt=0)
    ks_p_value: float = Field(default=0.001, gt=0, lt=1)
    min_change: float = Field(default=0.15, gt=0, lt=1)
    min_frames: int = Field(default=30, ge=5)


class Cause(StrEnum):
    """What a finding blames; `value` is the words used in messages."""

    LIGHTING = "lighting or exposure"
    FOCUS = "lens or focus"
    CONTRAST = "glare, haze or dirt on the lens, or the light's angle"
    COLOUR = "white balance or the light source"
    FIXTURE = "the part's fixture, the camera mount, or the product's reference image"
    MODEL = "relabel and retrain"


class Source(StrEnum):
    EQUIPMENT = "equipment"  # the camera or its light: fix the station
    MODEL = "model"  # the images are fine; the model no longer fits the parts


_SOURCE = {Cause.LIGHTING: Source.EQUIPMENT, Cause.FOCUS: Source.EQUIPMENT,
           Cause.CONTRAST: Source.EQUIPMENT, Cause.COLOUR: Source.EQUIPMENT, Cause.FIXTURE: Source.EQUIPMENT,
           Cause.MODEL: Source.MODEL}


@dataclass(frozen=True)
class StatisticDrift:
    """One statistic, reference against recent.

    `since` is the index in the recent window where its change most likely began
    (`change_point`); `change` is the relative move of the median from there on
    (-0.4: down 40%), so a change late in the window is measured on the frames it affected.
    """

    name: str
    reference_median: float
    recent_median: float
    psi: float
    ks_statistic: float
    ks_p_value: float
    drifted: bool
    since: int = 0
    change: float = 0.0


@dataclass(frozen=True)
class Finding:
    """One named cause. `change` is relative (-0.4: down 40%), light-corrected where it applies."""

    cause: Cause
    statistic: str
    change: float
    message: str
    since: datetime | None = None

    @property
    def source(self) -> Source:
        return _SOURCE[self.cause]


@dataclass(frozen=True)
class DriftReport:
    statistics: dict[str, StatisticDrift]
    findings: list[Finding] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)

    @property
    def drifted(self) -> bool:
        """Something was named: a finding, not just a statistic past a threshold."""
        return bool(self.findings)

    @property
    def source(self) -> Source | None:
        """EQUIPMENT when any finding is the equipment's (it explains a moved confidence too)."""
        sources = {finding.source for finding in self.findings}
        if Source.EQUIPMENT in sources:
            return Source.EQUIPMENT
        return Source.MODEL if sources else None

    def summary(self) -> str:
        """The findings and notes, one per line ("no drift" when there are none)."""
        lines = [finding.message for finding in self.findings] + self.notes
        return "\n".join(lines) if lines else "no drift"


# -- the two distances ------------------------------------------------------------------------


def psi(reference, recent, bins: int) -> float:
    """Population stability index of `recent` against `reference`, on `bins` bins cut at the
    reference's quantiles. Empty bins count as a tenth of a frame in their window, so a bin
    the recent window never visits adds a large but finite amount."""
    reference = np.asarray(reference, np.float64)
    recent = np.asarray(recent, np.float64)
    # Quantile cuts give each bin an equal share of the reference; repeated values (a
    # statistic stuck at one value) merge bins instead of making empty ones.
    edges = np.unique(np.quantile(reference, np.linspace(0, 1, bins + 1)[1:-1]))
    expected = np.bincount(np.searchsorted(edges, reference, side="right"),
                           minlength=len(edges) + 1).astype(np.float64)
    actual = np.bincount(np.searchsorted(edges, recent, side="right"),
                         minlength=len(edges) + 1).astype(np.float64)
    expected = np.maximum(expected, 0.1) / len(reference)
    actual = np.maximum(actual, 0.1) / len(recent)
    return float(np.sum((actual - expected) * np.log(actual / expected)))


def _kolmogorov_sf(x: float) -> float:
    """P(K > x) for the Kolmogorov distribution (two series, each fast where it converges)."""
    if x <= 0:
        return 1.0
    if x < 1.18:
        terms = np.exp(-((2 * np.arange(1, 6) - 1) ** 2) * math.pi ** 2 / (8 * x * x))
        return float(min(1.0, max(0.0, 1 - math.sqrt(2 * math.pi) / x * terms.sum())))
    j = np.arange(1, 6)
    return float(min(1.0, max(0.0, 2 * np.sum((-1.0) ** (j - 1) * np.exp(-2 * j * j * x * x)))))


def ks_2samp(a, b) -> tuple[float, float]:
    """Two-sample Kolmogorov-Smirnov: (D, asymptotic two-sided p-value).

    D is exact; the p-value uses the Kolmogorov limit with Stephens' small-sample correction
    (accurate to about 0.01 for windows of 30 or more frames), so no scipy is needed.
    """
    a = np.sort(np.asarray(a, np.float64))
    b = np.sort(np.asarray(b, np.float64))
    n, m = len(a), len(b)
    if n == 0 or m == 0:
        raise ValueError("KS needs at least one value in each sample")
    values = np.concatenate([a, b])
    cdf_a = np.searchsorted(a, values, side="right") / n
    cdf_b = np.searchsorted(b, values, side="right") / m
    d = float(np.max(np.abs(cdf_a - cdf_b)))
    en = math.sqrt(n * m / (n + m))
    return d, _kolmogorov_sf((en + 0.12 + 0.11 / en) * d)


def compare(name: str, reference, recent, settings: DriftSettings) -> StatisticDrift:
    """One statistic's drift, recent against reference."""
    reference = np.asarray(reference, np.float64)
    recent = np.asarray(recent, np.float64)
    for label, window in (("reference", reference), ("recent", recent)):
        if len(window) < settings.min_frames:
            raise ValueError(f"{name}: the {label} window has {len(window)} values; it needs "
                             f"at least min_frames = {settings.min_frames}")
    index = psi(reference, recent, settings.psi_bins)
    d, p = ks_2samp(reference, recent)
    reference_median = float(np.median(reference))
    # The change is measured from its estimated start, on at least a third of min_frames.
    since = change_point(reference, recent, min_tail=max(5, settings.min_frames // 3))
    tail_median = float(np.median(recent[since:]))
    change = tail_median / reference_median - 1 if reference_median else math.nan
    return StatisticDrift(name=name, reference_median=reference_median,
                          recent_median=float(np.median(recent)), psi=index, ks_statistic=d,
                          ks_p_value=p,
                          drifted=index >= settings.psi_threshold and p < settings.ks_p_value,
                          since=since, change=change)


# -- the diagnosis ----------------------------------------------------------------------------


def change_point(reference, recent, *, min_tail: int = 1) -> int:
    """Where in `recent` a change most likely began, leaving at least `min_tail` values after it.

    The least-squares split of reference + recent into two constant stretches, searched from
    the start of `recent` on: the split k maximising k (N - k) / N (mean before - mean after)^2.
    A window that moved as a whole splits at 0. On log values when all are positive, so a drop
    by half and a doubling weigh the same.
    """
    reference = np.asarray(reference, np.float64)
    recent = np.asarray(recent, np.float64)
    if np.all(reference > 0) and np.all(recent > 0):
        reference, recent = np.log(reference), np.log(recent)
    series = np.concatenate([reference, recent])
    n = len(series)
    candidates = np.arange(len(reference), max(len(reference) + 1, n - min_tail + 1))
    splits = candidates[(candidates > 0) & (candidates < n)]
    if len(splits) == 0:
        return 0
    cumulative = np.cumsum(series)
    before = cumulative[splits - 1] / splits
    after = (cumulative[-1] - cumulative[splits - 1]) / (n - splits)
    score = splits * (n - splits) / n * (before - after) ** 2
    return int(splits[np.argmax(score)] - len(reference))


def _percent(change: float) -> str:
    return f"{'up' if change > 0 else 'down'} {abs(change) * 100:.0f}%"


def compare_windows(reference, recent, settings: DriftSettings, *,
                    recent_times: Sequence[datetime] | None = None,
                    reference_confidence=None, recent_confidence=None,
                    reference_alignment=None, recent_alignment=None) -> DriftReport:
    """Compare a recent window of frame statistics with a reference window and diagnose.

    reference, recent: (N, len(Statistic)) arrays, columns as `Statistic` (see
    `image_stats.stack`). recent_times: one per recent row, for "since <time>".
    reference_confidence, recent_confidence: optional 1-D arrays of the model's confidences
    (e.g. each frame's highest box confidence) over the same windows.
    reference_alignment, recent_alignment: optional 1-D arrays of alignment scores of the
    frames judged against a reference image (inspection/detect/reference.py); their residual,
    1 - score, growing names the fixture, the mount or the reference (judged when both
    windows hold min_frames of them).
    """
    reference = np.asarray(reference, np.float64)
    recent = np.asarray(recent, np.float64)
    columns = len(Statistic)
    if reference.ndim != 2 or recent.ndim != 2 or reference.shape[1] != columns or (
            recent.shape[1] != columns):
        raise ValueError(f"windows must be (N, {columns}) arrays of frame statistics, got "
                         f"{reference.shape} and {recent.shape}")
    if recent_times is not None and len(recent_times) != len(recent):
        raise ValueError(f"{len(recent_times)} times for {len(recent)} recent frames")
    stats = {s.value: compare(s.value, reference[:, s.column], recent[:, s.column], settings)
             for s in Statistic}
    if (reference_confidence is None) != (recent_confidence is None):
        raise ValueError("give both confidence windows or neither")
    if reference_confidence is not None:
        stats[CONFIDENCE] = compare(CONFIDENCE, reference_confidence, recent_confidence, settings)

    # Light multiplies every pixel: a frame under g times the light has g times the contrast
    # and channel means and g^2 times the Laplacian's variance. Dividing it out frame by frame
    # leaves what the light does not explain, with less spread than the raw figures (each
    # part's own light varies too), so the lens or a colour cast can be judged apart from it.
    def corrected(window: np.ndarray, statistic: Statistic) -> np.ndarray:
        light = np.maximum(window[:, Statistic.BRIGHTNESS.column], 1.0)
        power = 2 if statistic is Statistic.SHARPNESS else 1
        return window[:, statistic.column] / light ** power

    light_free = {s: compare(f"{s.value} per light", corrected(reference, s),
                             corrected(recent, s), settings)
                  for s in (Statistic.SHARPNESS, Statistic.CONTRAST, Statistic.BLUE,
                            Statistic.GREEN, Statistic.RED)}
    stats.update({drift.name: drift for drift in light_free.values()})

    def finding(cause: Cause, statistic: Statistic, drift: StatisticDrift, words: str) -> Finding:
        when = None if recent_times is None else recent_times[drift.since]
        text = f"{words} since {when.isoformat(timespec='minutes')}" if when else words
        return Finding(cause=cause, statistic=statistic.value, change=drift.change,
                       message=f"{text}: {cause.value}", since=when)

    def moved(drift: StatisticDrift) -> bool:
        return drift.drifted and math.isfinite(drift.change) and (
            abs(drift.change) >= settings.min_change)

    findings: list[Finding] = []
    brightness = stats[Statistic.BRIGHTNESS.value]
    light_moved = moved(brightness)
    if light_moved:
        findings.append(finding(Cause.LIGHTING, Statistic.BRIGHTNESS, brightness,
                                f"brightness {_percent(brightness.change)}"))
    beyond = " beyond what the light explains" if light_moved else ""
    for statistic, cause in ((Statistic.SHARPNESS, Cause.FOCUS),
                             (Statistic.CONTRAST, Cause.CONTRAST)):
        drift = light_free[statistic]
        if moved(drift):
            findings.append(finding(cause, statistic, drift,
                                    f"{statistic.value} {_percent(drift.change)}{beyond}"))
    # Colour: each channel against the light; the channel that moved most is named.
    channels = [s for s in (Statistic.BLUE, Statistic.GREEN, Statistic.RED)
                if moved(light_free[s])]
    if channels:
        channel = max(channels, key=lambda s: abs(light_free[s].change))
        drift = light_free[channel]
        findings.append(finding(Cause.COLOUR, channel, drift,
                                f"{channel.value} {_percent(drift.change)} against the light"))

    if reference_alignment is not None and recent_alignment is not None and min(
            len(reference_alignment), len(recent_alignment)) >= settings.min_frames:
        residual = compare(ALIGNMENT, 1 - np.asarray(reference_alignment, np.float64),
                           1 - np.asarray(recent_alignment, np.float64), settings)
        stats[ALIGNMENT] = residual
        if moved(residual) and residual.change > 0:
            # Its time is known when every recent frame was aligned (a reference station's).
            when = recent_times[residual.since] if recent_times is not None and len(recent_times) == len(
                recent_alignment) else None
            words = f"alignment residual {_percent(residual.change)}"
            text = f"{words} since {when.isoformat(timespec='minutes')}" if when else words
            findings.append(Finding(cause=Cause.FIXTURE, statistic=ALIGNMENT, change=residual.change,
                                    message=f"{text}: {Cause.FIXTURE.value}", since=when))

    notes: list[str] = []
    confidence = stats.get(CONFIDENCE)
    if confidence is not None and confidence.drifted:
        if findings:
            notes.append("the model's confidence moved too, as it does when the images "
                         "change: fix the equipment before judging the model")
        else:
            findings.append(Finding(
                cause=Cause.MODEL, statistic=CONFIDENCE, change=confidence.change,
                message="the model's confidence moved while the images did not: "
                        f"{Cause.MODEL.value}"))
    return DriftReport(statistics=stats, findings=findings, notes=notes)
