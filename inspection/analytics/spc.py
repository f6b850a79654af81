"""Statistical process control for defect rates: p- and u-charts, Western Electric and trend
rules, EWMA and CUSUM.

Example::

    >>> from inspection.analytics.spc import ChartKind, baseline_limits, p_chart
    >>> baseline = baseline_limits(ChartKind.P, counts=[1, 2, 0, 1, 1, 2, 1, 0], sizes=[50] * 8)
    >>> round(baseline.centre, 3), round(float(baseline.upper(50)), 3)
    (0.02, 0.079)
    >>> chart = p_chart(baseline, counts=[1, 0, 5, 1], sizes=[50, 50, 50, 50])
    >>> [(alarm.rule.value, alarm.index, alarm.side.value) for alarm in chart.alarms]
    [('WE1', 2, 'above')]
    >>> print(chart.alarms[0].message)
    point 2: fraction 0.100 above the upper control limit 0.079 (4.0σ from the centre)

How it fits together, and why:

- Limits come from a baseline window and are then frozen (`Limits`, a serialisable value):
  a chart whose limits were recomputed from the data it judges would slowly accept a drift as
  the new normal. `baseline_limits(..., exclude=...)` drops points with a known cause, as in
  the textbook's revised limits.
- Subgroups may differ in size (a shift inspects what the line made). Each point has its own
  sigma, sqrt(p(1-p)/n) or sqrt(u/n), so every rule is evaluated on the standardised point
  z = (x - centre) / sigma: the zones (1, 2, 3 sigma) then mean the same for every n.
- Alarms carry a side: ABOVE means more defects (worse), BELOW fewer (an improvement worth a
  look, not a page). Alarms point at the subgroup that completes the pattern.
- Shewhart rules catch large shifts at once and small ones late; EWMA and CUSUM accumulate
  evidence across subgroups and catch small shifts (2% -> 3%) much earlier at the same
  false-alarm rate (bench/analytics/run.py measures both).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from enum import StrEnum

import numpy as np

from inspection.errors import ConfigError


class ChartKind(StrEnum):
    """P: fraction of parts defective (counts are defective parts out of n inspected).
    U: defects per part (counts are defects found on n parts; a part may have several)."""

    P = "p"
    U = "u"


class Rule(StrEnum):
    """What raised an alarm. WE1-WE4 are the Western Electric zone rules."""

    BEYOND_3_SIGMA = "WE1"  # one point beyond 3 sigma
    TWO_OF_THREE_BEYOND_2_SIGMA = "WE2"  # two of three consecutive beyond 2 sigma, same side
    FOUR_OF_FIVE_BEYOND_1_SIGMA = "WE3"  # four of five consecutive beyond 1 sigma, same side
    EIGHT_ON_ONE_SIDE = "WE4"  # eight consecutive on one side of the centre line
    TREND = "TREND"  # six consecutive points steadily increasing or decreasing
    EWMA = "EWMA"  # the EWMA statistic left its limits
    CUSUM = "CUSUM"  # a cumulative sum crossed its decision interval


WESTERN_ELECTRIC = (
    Rule.BEYOND_3_SIGMA,
    Rule.TWO_OF_THREE_BEYOND_2_SIGMA,
    Rule.FOUR_OF_FIVE_BEYOND_1_SIGMA,
    Rule.EIGHT_ON_ONE_SIDE,
    Rule.TREND,
)


class Side(StrEnum):
    """ABOVE: the defect rate went up (worse); BELOW: it went down."""

    ABOVE = "above"
    BELOW = "below"


@dataclass(frozen=True)
class Alarm:
    """One rule firing at one point.

    Attributes:
        rule: which rule.
        index: the point (subgroup) that completed the pattern, 0-based.
        side: ABOVE (more defects) or BELOW.
        message: one sentence in words, for an operator.
        time: the point's time when the chart was given times.
    """

    rule: Rule
    index: int
    side: Side
    message: str
    time: datetime | None = None


@dataclass(frozen=True)
class Limits:
    """Frozen control limits: a centre line and how wide the limits are for a subgroup of n.

    For a p-chart sigma(n) = sqrt(centre (1 - centre) / n); for a u-chart sqrt(centre / n).
    Limits are centre +- k_sigma * sigma(n), the lower one clipped at 0 (and a fraction's
    upper one at 1). `to_dict` / `from_dict` store it (JSON, a database column).

    Attributes:
        kind: P or U.
        centre: p-bar (fraction defective) or u-bar (defects per part) of the baseline.
        k_sigma: the width of the control limits in sigmas (3 by convention).
        baseline_subgroups, baseline_units, baseline_count: what the centre was computed
            from (subgroups used, parts inspected, defective parts or defects), for the record.
    """

    kind: ChartKind
    centre: float
    k_sigma: float = 3.0
    baseline_subgroups: int = 0
    baseline_units: int = 0
    baseline_count: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "kind", ChartKind(self.kind))
        upper = 1.0 if self.kind is ChartKind.P else math.inf
        if not (0 < self.centre < upper) or not math.isfinite(self.centre):
            raise ConfigError(
                f"a {self.kind.value}-chart's centre must lie strictly between 0 and "
                f"{'1' if upper == 1 else 'infinity'}, got {self.centre}: a baseline with no "
                "defects at all has no spread to set limits from; use a longer baseline window")
        if not self.k_sigma > 0:
            raise ConfigError(f"k_sigma must be positive, got {self.k_sigma}")

    def sigma(self, sizes) -> np.ndarray:
        """The standard deviation of one subgroup's rate, for subgroup size(s) `sizes`."""
        n = np.asarray(sizes, dtype=np.float64)
        if self.kind is ChartKind.P:
            return np.sqrt(self.centre * (1.0 - self.centre) / n)
        return np.sqrt(self.centre / n)

    def upper(self, sizes, k: float | None = None) -> np.ndarray:
        """Upper limit(s) at `k` sigmas (default: k_sigma) for subgroup size(s) `sizes`."""
        limit = self.centre + (self.k_sigma if k is None else k) * self.sigma(sizes)
        return np.minimum(limit, 1.0) if self.kind is ChartKind.P else limit

    def lower(self, sizes, k: float | None = None) -> np.ndarray:
        """Lower limit(s), clipped at 0: a negative rate cannot be observed."""
        return np.maximum(self.centre - (self.k_sigma if k is None else k) * self.sigma(sizes), 0.0)

    def standardise(self, counts, sizes) -> np.ndarray:
        """z = (rate - centre) / sigma(n) per subgroup; works on any shape (last axis: time)."""
        counts, sizes = _counts_and_sizes(self.kind, counts, sizes)
        return (counts / sizes - self.centre) / self.sigma(sizes)

    def to_dict(self) -> dict:
        return {"kind": self.kind.value, "centre": self.centre, "k_sigma": self.k_sigma,
                "baseline_subgroups": self.baseline_subgroups,
                "baseline_units": self.baseline_units, "baseline_count": self.baseline_count}

    @classmethod
    def from_dict(cls, data: dict) -> Limits:
        unknown = set(data) - {"kind", "centre", "k_sigma", "baseline_subgroups",
                               "baseline_units", "baseline_count"}
        if unknown:
            raise ConfigError(f"unknown keys in stored limits: {', '.join(sorted(unknown))}")
        return cls(kind=ChartKind(data["kind"]), centre=float(data["centre"]),
                   k_sigma=float(data.get("k_sigma", 3.0)),
                   baseline_subgroups=int(data.get("baseline_subgroups", 0)),
                   baseline_units=int(data.get("baseline_units", 0)),
                   baseline_count=int(data.get("baseline_count", 0)))


def _counts_and_sizes(kind: ChartKind, counts, sizes) -> tuple[np.ndarray, np.ndarray]:
    counts = np.asarray(counts, dtype=np.float64)
    sizes = np.broadcast_to(np.asarray(sizes, dtype=np.float64), counts.shape)
    if np.any(sizes <= 0) or not np.all(np.isfinite(sizes)):
        raise ValueError("every subgroup needs at least one inspected part (size > 0)")
    if np.any(counts < 0):
        raise ValueError("counts cannot be negative")
    if kind is ChartKind.P and np.any(counts > sizes):
        raise ValueError("a p-chart counts defective parts: a count cannot exceed its subgroup's "
                         "size (for defects per part, use a u-chart)")
    return counts, sizes


def baseline_limits(kind: ChartKind, counts, sizes, *, exclude: Sequence[int] = (),
                    k_sigma: float = 3.0) -> Limits:
    """Limits from a baseline window: centre = total count / total units.

    `exclude` lists subgroups (0-based) left out, e.g. points with a known, removed cause: the
    textbook's "revised limits". Variable sizes weigh each subgroup by its size, as they must
    (the average of per-subgroup fractions would over-weigh small subgroups).
    """
    kind = ChartKind(kind)
    counts, sizes = _counts_and_sizes(kind, counts, sizes)
    if counts.ndim != 1:
        raise ValueError("a baseline is one series of subgroups (a 1-D array)")
    keep = np.ones(len(counts), bool)
    for index in exclude:
        if not 0 <= index < len(counts):
            raise ValueError(f"exclude: no subgroup {index} in a baseline of {len(counts)}")
        keep[index] = False
    if not keep.any():
        raise ConfigError("the baseline window is empty: it needs at least one subgroup")
    total, units = float(counts[keep].sum()), float(sizes[keep].sum())
    return Limits(kind=kind, centre=total / units, k_sigma=k_sigma,
                  baseline_subgroups=int(keep.sum()), baseline_units=round(units),
                  baseline_count=round(total))


# -- rules on standardised points ---------------------------------------------------------


def _window_count(flags: np.ndarray, width: int) -> np.ndarray:
    """How many of the last `width` points (fewer at the start) are flagged, at each point."""
    cumulative = np.cumsum(flags, axis=-1, dtype=np.int64)
    shifted = np.zeros_like(cumulative)
    shifted[..., width:] = cumulative[..., :-width]
    return cumulative - shifted


def rule_hits(z, rules: Sequence[Rule] = WESTERN_ELECTRIC) -> dict[tuple[Rule, Side], np.ndarray]:
    """Boolean arrays (same shape as z; last axis is time) of where each rule fires per side.

    A point fires when it completes the pattern: for WE2 and WE3 the point itself must be one
    of those beyond the zone, so one excursion is reported at its own point and not again for
    the next points whose window still holds it. Vectorised over leading axes (many simulated
    lines at once in the benchmark).
    """
    z = np.asarray(z, dtype=np.float64)
    hits: dict[tuple[Rule, Side], np.ndarray] = {}
    for rule in rules:
        for side, sign in ((Side.ABOVE, 1.0), (Side.BELOW, -1.0)):
            s = sign * z  # the side under test is positive
            if rule is Rule.BEYOND_3_SIGMA:
                hit = s > 3
            elif rule is Rule.TWO_OF_THREE_BEYOND_2_SIGMA:
                hit = (s > 2) & (_window_count(s > 2, 3) >= 2)
            elif rule is Rule.FOUR_OF_FIVE_BEYOND_1_SIGMA:
                hit = (s > 1) & (_window_count(s > 1, 5) >= 4)
            elif rule is Rule.EIGHT_ON_ONE_SIDE:
                hit = _window_count(s > 0, 8) >= 8
            elif rule is Rule.TREND:
                # Five consecutive rises make six points steadily increasing; a tie breaks it.
                rises = np.zeros(z.shape, bool)
                rises[..., 1:] = np.diff(s, axis=-1) > 0
                hit = _window_count(rises, 5) >= 5
            else:
                raise ValueError(f"{rule.value} is not a zone or trend rule")
            hits[(rule, side)] = hit
    return hits


_RULE_WORDS = {
    Rule.TWO_OF_THREE_BEYOND_2_SIGMA: "two of the last three points beyond 2σ",
    Rule.FOUR_OF_FIVE_BEYOND_1_SIGMA: "four of the last five points beyond 1σ",
    Rule.EIGHT_ON_ONE_SIDE: "eight points in a row",
}


def western_electric(z, *, rules: Sequence[Rule] = WESTERN_ELECTRIC,
                     times: Sequence[datetime] | None = None,
                     values=None, limits: Limits | None = None, sizes=None) -> list[Alarm]:
    """Alarms from the Western Electric zone rules and the trend rule on standardised points.

    `z` is one series (1-D). With `values`, `limits` and `sizes` the messages quote the plotted
    value and its limit; `times` stamps each alarm. Sorted by point, then rule.
    """
    z = np.asarray(z, dtype=np.float64)
    if z.ndim != 1:
        raise ValueError("western_electric takes one series (1-D); use rule_hits for many")
    if times is not None and len(times) != len(z):
        raise ValueError(f"{len(times)} times for {len(z)} points")
    alarms = []
    for (rule, side), hit in rule_hits(z, rules).items():
        for found in np.flatnonzero(hit):
            index = int(found)
            alarms.append(Alarm(rule=rule, index=index, side=side,
                                message=_zone_message(rule, side, index, z, values, limits, sizes),
                                time=None if times is None else times[index]))
    order = {rule: i for i, rule in enumerate(Rule)}
    alarms.sort(key=lambda a: (a.index, order[a.rule], a.side is Side.BELOW))
    return alarms


def _zone_message(rule: Rule, side: Side, index: int, z: np.ndarray, values, limits, sizes) -> str:
    where = "above" if side is Side.ABOVE else "below"
    if rule is Rule.BEYOND_3_SIGMA:
        if values is not None and limits is not None and sizes is not None:
            n = np.broadcast_to(np.asarray(sizes, dtype=np.float64), z.shape)[index]
            limit = limits.upper(n) if side is Side.ABOVE else limits.lower(n)
            what = "fraction" if limits.kind is ChartKind.P else "defects per part"
            return (f"point {index}: {what} {float(values[index]):.3f} {where} the "
                    f"{'upper' if side is Side.ABOVE else 'lower'} control limit "
                    f"{float(limit):.3f} ({abs(z[index]):.1f}σ from the centre)")
        return f"point {index}: {abs(z[index]):.1f}σ {where} the centre line (beyond 3σ)"
    if rule is Rule.TREND:
        direction = "increasing" if side is Side.ABOVE else "decreasing"
        return f"points {index - 5}-{index}: six in a row steadily {direction}"
    first = index - {Rule.TWO_OF_THREE_BEYOND_2_SIGMA: 2, Rule.FOUR_OF_FIVE_BEYOND_1_SIGMA: 4,
                     Rule.EIGHT_ON_ONE_SIDE: 7}[rule]
    return f"points {max(first, 0)}-{index}: {_RULE_WORDS[rule]} {where} the centre line"


@dataclass(frozen=True)
class ChartResult:
    """A Shewhart chart over a series: what to plot and what fired.

    values: the rates plotted; lower/upper: each point's limits; z: standardised points.
    """

    limits: Limits
    values: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    z: np.ndarray
    alarms: list[Alarm] = field(default_factory=list)


def shewhart_chart(limits: Limits, counts, sizes, *, rules: Sequence[Rule] = WESTERN_ELECTRIC,
                   times: Sequence[datetime] | None = None) -> ChartResult:
    """A p- or u-chart (as `limits.kind`) of one series against frozen limits."""
    counts, sizes = _counts_and_sizes(limits.kind, counts, sizes)
    if counts.ndim != 1:
        raise ValueError("a chart is one series (1-D counts)")
    values = counts / sizes
    z = limits.standardise(counts, sizes)
    alarms = western_electric(z, rules=rules, times=times, values=values, limits=limits,
                              sizes=sizes)
    return ChartResult(limits=limits, values=values, lower=limits.lower(sizes),
                       upper=limits.upper(sizes), z=z, alarms=alarms)


def p_chart(limits: Limits, counts, sizes, **options) -> ChartResult:
    """Fraction defective per subgroup: `counts` defective parts out of `sizes` inspected."""
    if limits.kind is not ChartKind.P:
        raise ConfigError("p_chart needs p-chart limits (ChartKind.P)")
    return shewhart_chart(limits, counts, sizes, **options)


def u_chart(limits: Limits, counts, sizes, **options) -> ChartResult:
    """Defects per part: `counts` defects found on `sizes` parts."""
    if limits.kind is not ChartKind.U:
        raise ConfigError("u_chart needs u-chart limits (ChartKind.U)")
    return shewhart_chart(limits, counts, sizes, **options)


# -- EWMA -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class EwmaSettings:
    """EWMA chart: statistic E_t = lam * x_t + (1 - lam) * E_(t-1), E_0 = centre; limits
    centre +- width * sqrt(Var E_t). Small `lam` remembers longer and sees smaller shifts.

    No defaults: the pair sets the false-alarm rate, which depends on the subgroup size and
    the baseline rate; bench/analytics/run.py shows a calibrated pair for 2% at n = 50.
    """

    lam: float
    width: float

    def __post_init__(self) -> None:
        if not 0 < self.lam <= 1:
            raise ConfigError(f"EWMA lam must be in (0, 1], got {self.lam}")
        if not self.width > 0:
            raise ConfigError(f"EWMA width must be positive, got {self.width}")


@dataclass(frozen=True)
class EwmaResult:
    statistic: np.ndarray
    lower: np.ndarray
    upper: np.ndarray
    above: np.ndarray  # bool: the statistic is above its upper limit
    below: np.ndarray
    alarms: list[Alarm] = field(default_factory=list)


def ewma(limits: Limits, counts, sizes, settings: EwmaSettings, *,
         times: Sequence[datetime] | None = None) -> EwmaResult:
    """EWMA of the subgroup rates with exact, time-varying limits.

    Var E_t = lam^2 sigma_t^2 + (1 - lam)^2 Var E_(t-1), with sigma_t = limits.sigma(n_t): exact
    for any sequence of subgroup sizes, and narrow at the start (where the usual asymptotic
    limits would be too wide). Any shape: the last axis is time; `alarms` only for 1-D input.
    """
    counts, sizes = _counts_and_sizes(limits.kind, counts, sizes)
    x = counts / sizes
    sigma2 = limits.sigma(sizes) ** 2
    lam = settings.lam
    statistic = np.empty_like(x)
    variance = np.empty_like(x)
    e = np.full(x.shape[:-1], limits.centre)
    v = np.zeros(x.shape[:-1])
    for t in range(x.shape[-1]):  # a recursion over time, vectorised across series
        e = lam * x[..., t] + (1 - lam) * e
        v = lam * lam * sigma2[..., t] + (1 - lam) ** 2 * v
        statistic[..., t] = e
        variance[..., t] = v
    spread = settings.width * np.sqrt(variance)
    upper = limits.centre + spread
    lower = np.maximum(limits.centre - spread, 0.0)
    above, below = statistic > upper, statistic < lower
    alarms = []
    if x.ndim == 1:
        for side, hits in ((Side.ABOVE, above), (Side.BELOW, below)):
            for found in np.flatnonzero(hits):
                index = int(found)
                limit = upper[index] if side is Side.ABOVE else lower[index]
                alarms.append(Alarm(
                    rule=Rule.EWMA, index=index, side=side,
                    message=(f"point {index}: EWMA (lam {lam:g}) {statistic[index]:.4f} "
                             f"{side.value} its limit {limit:.4f} (centre {limits.centre:.4f})"),
                    time=None if times is None else times[index]))
        alarms.sort(key=lambda a: a.index)
    return EwmaResult(statistic, lower, upper, above, below, alarms)


# -- CUSUM ------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CusumSettings:
    """Likelihood-ratio CUSUM tuned to catch the rate moving from the centre to
    `shift` x centre (up) and centre / `shift` (down).

    S_t = max(0, S_(t-1) + count_t - k n_t); alarm when S_t > `h`. k (per part) is the
    allowance that makes this the binomial (p-chart) or Poisson (u-chart) sequential
    probability ratio test; S is in defects, so h reads "h more defects than the baseline
    allows, accumulated". With n = 1 per subgroup it is the Bernoulli CUSUM, part by part.
    No defaults: h sets the false-alarm rate (see bench/analytics/run.py).
    """

    shift: float
    h: float

    def __post_init__(self) -> None:
        if not self.shift > 1:
            raise ConfigError(f"CUSUM shift must be above 1 (a ratio of rates), got {self.shift}")
        if not self.h > 0:
            raise ConfigError(f"CUSUM h must be positive, got {self.h}")


def cusum_allowance(limits: Limits, rate: float) -> float:
    """k per part for detecting a move from limits.centre to `rate` (the SPRT's slope)."""
    p0, p1 = limits.centre, rate
    if limits.kind is ChartKind.P:
        if not 0 < p1 < 1:
            raise ConfigError(f"the CUSUM's target fraction must lie in (0, 1), got {p1}; "
                              "choose a smaller shift")
        return math.log((1 - p0) / (1 - p1)) / math.log(p1 * (1 - p0) / (p0 * (1 - p1)))
    return (p1 - p0) / math.log(p1 / p0)


@dataclass(frozen=True)
class CusumResult:
    upper_sum: np.ndarray  # S+ (defects above the allowance)
    lower_sum: np.ndarray  # S- (defects below it)
    above: np.ndarray
    below: np.ndarray
    alarms: list[Alarm] = field(default_factory=list)


def cusum(limits: Limits, counts, sizes, settings: CusumSettings, *,
          times: Sequence[datetime] | None = None) -> CusumResult:
    """Upper and lower CUSUM of the counts. Sums are not reset after an alarm: in a plant an
    alarm is acted on and the chart restarted from new limits. Any shape (last axis: time)."""
    counts, sizes = _counts_and_sizes(limits.kind, counts, sizes)
    k_up = cusum_allowance(limits, limits.centre * settings.shift)
    k_down = cusum_allowance(limits, limits.centre / settings.shift)
    step_up = counts - k_up * sizes
    step_down = k_down * sizes - counts
    upper_sum = np.empty_like(counts)
    lower_sum = np.empty_like(counts)
    s = np.zeros(counts.shape[:-1])
    r = np.zeros(counts.shape[:-1])
    for t in range(counts.shape[-1]):
        s = np.maximum(0.0, s + step_up[..., t])
        r = np.maximum(0.0, r + step_down[..., t])
        upper_sum[..., t] = s
        lower_sum[..., t] = r
    above, below = upper_sum > settings.h, lower_sum > settings.h
    alarms = []
    if counts.ndim == 1:
        unit = "defective parts" if limits.kind is ChartKind.P else "defects"
        for side, hits, sums, _ in ((Side.ABOVE, above, upper_sum, k_up),
                                    (Side.BELOW, below, lower_sum, k_down)):
            for found in np.flatnonzero(hits):
                index = int(found)
                more = "more" if side is Side.ABOVE else "fewer"
                alarms.append(Alarm(
                    rule=Rule.CUSUM, index=index, side=side,
                    message=(f"point {index}: {sums[index]:.1f} {unit} {more} than the baseline "
                             f"allows have accumulated (CUSUM h {settings.h:g}, tuned for a "
                             f"rate {settings.shift:g}x {'higher' if side is Side.ABOVE else 'lower'})"),
                    time=None if times is None else times[index]))
        alarms.sort(key=lambda a: a.index)
    return CusumResult(upper_sum, lower_sum, above, below, alarms)
