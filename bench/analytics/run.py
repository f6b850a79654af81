"""Plant analytics benchmark: how fast SPC charts alarm on a defect-rate step and how often
they alarm on a stable line; how fast the drift detector names a camera that lost sharpness
or light. Writes the section "analytics" of BENCHMARKS.md.

    python bench/analytics/run.py            # full run, a few minutes on 2 cores
    python bench/analytics/run.py --quick    # a smoke run with fewer lines and frames

Simulated lines are seeded (the seeds are printed and written). The charts are the library's
own functions (inspection.analytics.spc, .drift), run on many simulated lines at once along
the first axis.

Definitions:
- A part is defective with probability p (a FAIL verdict). Subgroups are 50 consecutive parts.
- In-control false-alarm rate: stable 2% lines run until their first alarm that says
  "the defect rate went up" (side ABOVE) or a horizon; rate = alarms / parts watched, the
  rate a line restarted after each alarm would see.
- ARL: a line runs WARMUP subgroups at 2%, then steps to p1; lines that alarmed before the
  step are dropped (counted); run length = parts from the step to the alarm (to the end of the
  alarming subgroup; the part itself for the part-by-part CUSUM).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import cv2
import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from bench.report import machine, table, write_section
from inspection.analytics.drift import Cause, DriftSettings, Source, compare_windows
from inspection.analytics.image_stats import Statistic, image_stats, stack
from inspection.analytics.spc import (
    WESTERN_ELECTRIC,
    ChartKind,
    CusumSettings,
    EwmaSettings,
    Limits,
    Rule,
    Side,
    cusum,
    ewma,
    rule_hits,
)
from inspection.data.synth.generator import make_sample, sample_seed

P0 = 0.02
STEPS = (0.03, 0.04, 0.06)
N = 50  # parts per subgroup
WARMUP = 40  # subgroups at P0 before the step (2,000 parts): steady state, not a fresh chart
GOAL_PARTS = 500  # a 2% -> 4% step alarmed within this many parts on average
GOAL_RATE = 1.0  # fewer false alarms than this per 10,000 parts
# Chosen by simulation (this script's in-control run) so a stable 2% line stays under one
# false alarm per 10,000 parts with some margin; each pair trades speed for false alarms.
EWMA = EwmaSettings(lam=0.2, width=2.9)
CUSUM = CusumSettings(shift=2.0, h=5.0)  # on the 50-part subgroups
BERNOULLI = CusumSettings(shift=2.0, h=6.0)  # the same test part by part (subgroups of 1)
LIMITS = Limits(kind=ChartKind.P, centre=P0)  # the frozen baseline: 2% known from history


def _upper_we(counts, n, rules=WESTERN_ELECTRIC):
    hits = rule_hits(LIMITS.standardise(counts, n), rules)
    return np.logical_or.reduce([hit for (_, side), hit in hits.items() if side is Side.ABOVE])


def _we_all(counts, n):
    return _upper_we(counts, n)


def _we_rule1(counts, n):
    return _upper_we(counts, n, [Rule.BEYOND_3_SIGMA])


def _ewma(counts, n):
    return ewma(LIMITS, counts, n, EWMA).above


def _cusum(counts, n):
    return cusum(LIMITS, counts, n, CUSUM).above


def _bernoulli(counts, n):
    return cusum(LIMITS, counts, n, BERNOULLI).above


# (label, alarm function, subgroup size)
CHARTS = [
    ("p-chart, Western Electric rules 1-4 + trend, n = 50", _we_all, N),
    ("p-chart, rule 1 only (beyond 3σ), n = 50", _we_rule1, N),
    ("p-chart, Western Electric rules 1-4 + trend, n = 200", _we_all, 200),
    ("p-chart, rule 1 only, n = 200", _we_rule1, 200),
    (f"EWMA λ {EWMA.lam:g}, L {EWMA.width:g}, n = 50", _ewma, N),
    (f"binomial CUSUM (tuned for 2x), h {CUSUM.h:g}, n = 50", _cusum, N),
    (f"Bernoulli CUSUM (tuned for 2x), h {BERNOULLI.h:g}, part by part", _bernoulli, 1),
]


def _first(hits: np.ndarray) -> np.ndarray:
    """Index of each row's first alarm, -1 where none."""
    return np.where(hits.any(-1), hits.argmax(-1), -1)


def _chunks(lines: int, steps: int) -> list[int]:
    """Lines per batch so a batch's arrays stay near 4M values (~32 MB each): the charts keep
    several such arrays, and the machine is shared."""
    per = max(1, 4_000_000 // steps)
    return [min(per, lines - start) for start in range(0, lines, per)]


def in_control(alarm, n, lines, parts, seed):
    """False alarms per 10,000 parts on stable 2% lines, with a 95% upper bound."""
    rng = np.random.default_rng(seed)
    groups = parts // n
    first = np.concatenate([_first(alarm(rng.binomial(n, P0, (batch, groups)), n))
                            for batch in _chunks(lines, groups)])
    alarmed = first >= 0
    watched = np.where(alarmed, (first + 1) * n, groups * n).sum()
    count = int(alarmed.sum())
    rate = count / watched * 1e4
    upper = (count + 1.96 * np.sqrt(count) + 2) / watched * 1e4
    return rate, upper, count, int(watched)


def run_length(alarm, n, p1, lines, seed, horizon_parts=20_000):
    """Mean parts from a step P0 -> p1 to the alarm, its standard error, and the counts of
    lines dropped (alarm before the step) and censored (no alarm by the horizon)."""
    rng = np.random.default_rng(seed)
    warm = WARMUP * N // n
    horizon = horizon_parts // n
    early, first = [], []
    for batch in _chunks(lines, warm + horizon):
        counts = np.concatenate([rng.binomial(n, P0, (batch, warm)),
                                 rng.binomial(n, p1, (batch, horizon))], axis=1)
        hits = alarm(counts, n)
        early.append(hits[:, :warm].any(-1))
        first.append(_first(hits[:, warm:]))
    early, first = np.concatenate(early), np.concatenate(first)
    done = ~early & (first >= 0)
    parts = (first[done] + 1) * n
    return parts.mean(), parts.std() / np.sqrt(len(parts)), int(early.sum()), int(
        (~early & (first < 0)).sum())


def spc_section(quick: bool, seed: int) -> tuple[str, dict]:
    lines_ic, parts_ic = (300, 30_000) if quick else (2000, 50_000)
    lines_arl = 500 if quick else 4000
    rows, figures = [], {}
    for i, (label, alarm, n) in enumerate(CHARTS):
        started = time.perf_counter()
        # Part by part is a Python loop over every part: fewer lines keep it to a minute.
        lines = lines_ic if n > 1 else lines_ic // 2
        arl_lines = lines_arl if n > 1 else lines_arl // 2
        rate, upper, count, watched = in_control(alarm, n, lines, parts_ic, seed + 100 * i)
        arls = [run_length(alarm, n, p1, arl_lines, seed + 100 * i + j + 1)
                for j, p1 in enumerate(STEPS)]
        met = arls[1][0] <= GOAL_PARTS and upper < GOAL_RATE
        figures[label] = (rate, upper, arls, met)
        rows.append([label, f"{rate:.2f} (≤ {upper:.2f}; {count} in {watched / 1e6:.1f}M parts)"]
                    + [f"{arl:.0f} ± {se:.0f}" + (f" ({censored} of {arl_lines} not yet)"
                                                  if censored else "")
                       for arl, se, _, censored in arls]
                    + ["**met**" if met else "not met"])
        print(f"{label}: {rate:.2f}/10k (≤{upper:.2f}), ARL "
              + ", ".join(f"{arl:.0f}" for arl, *_ in arls)
              + f" [{time.perf_counter() - started:.1f}s]", flush=True)
    body = table(["chart", "false alarms per 10,000 parts at 2% (95% upper bound)",
                  "ARL 2%→3% (parts)", "ARL 2%→4% (parts)", "ARL 2%→6% (parts)",
                  f"goal: 2→4% ≤ {GOAL_PARTS} parts and < {GOAL_RATE:g}/10k"], rows)
    return body, figures


# -- drift --------------------------------------------------------------------------------


def frame_pool(count: int, seed: int):
    """One product line: the same surface, each part with its own light, noise and defects."""
    return [make_sample(sample_seed(seed, i), surface="foil").image for i in range(count)]


def blur_for(frames, loss: float) -> float:
    """The Gaussian blur (sigma, px at 640) that lowers median sharpness by `loss`."""
    base = np.median([image_stats(f).sharpness for f in frames])
    low, high = 0.1, 5.0
    for _ in range(12):
        sigma = (low + high) / 2
        ratio = np.median([image_stats(cv2.GaussianBlur(f, (0, 0), sigma)).sharpness
                           for f in frames]) / base
        low, high = (sigma, high) if ratio > 1 - loss else (low, sigma)
    return (low + high) / 2


def frames_to_flag(reference, normal, changed, expected: Cause, settings, window, trials, rng):
    """Frames after a change until the drift detector names `expected` as equipment, per trial
    (a trial: a stream of `window` normal frames, then changed frames; the recent window is
    the last `window` frames, checked at every frame). Also: a wrong cause named first."""
    found, wrong = [], []
    for _ in range(trials):
        before = normal[rng.choice(len(normal), window, replace=False)]
        after = changed[rng.choice(len(changed), window, replace=False)]
        stream = np.concatenate([before, after])
        for k in range(1, window + 1):
            report = compare_windows(reference, stream[k:k + window], settings)
            if report.drifted:
                causes = {f.cause for f in report.findings}
                if expected in causes and report.source is Source.EQUIPMENT:
                    found.append(k)
                else:
                    wrong.append(report.summary().replace("\n", "; "))
                break
        else:
            found.append(np.nan)
    return np.array(found, float), wrong


def drift_section(quick: bool, seed: int) -> tuple[str, dict]:
    count = 160 if quick else 480
    started = time.perf_counter()
    frames = frame_pool(count, seed)
    generate_s = time.perf_counter() - started
    frame = frames[0]
    for _ in range(20):
        image_stats(frame)
    times = []
    for _ in range(200 if not quick else 50):
        t = time.perf_counter()
        image_stats(frame)
        times.append(time.perf_counter() - t)
    stats_ms = float(np.median(times) * 1000)

    sigma = blur_for(frames[:40], 0.40)
    half = count // 2
    reference = stack([image_stats(f) for f in frames[:half]])  # the frozen reference
    normal = stack([image_stats(f) for f in frames[half:]])  # other parts of the same line
    blurred = stack([image_stats(cv2.GaussianBlur(f, (0, 0), sigma)) for f in frames[half:]])
    darker = stack([image_stats(cv2.convertScaleAbs(f, alpha=0.7)) for f in frames[half:]])
    sharp_loss = 1 - np.median(blurred[:, Statistic.SHARPNESS.column]) / np.median(
        normal[:, Statistic.SHARPNESS.column])
    light_loss = 1 - np.median(darker[:, Statistic.BRIGHTNESS.column]) / np.median(
        normal[:, Statistic.BRIGHTNESS.column])

    settings = DriftSettings()
    window = 50
    trials = 20 if quick else 100
    rng = np.random.default_rng(seed + 1)
    blur_n, blur_wrong = frames_to_flag(reference, normal, blurred, Cause.FOCUS, settings,
                                        window, trials, rng)
    dark_n, dark_wrong = frames_to_flag(reference, normal, darker, Cause.LIGHTING, settings,
                                        window, trials, rng)
    # Stable camera: windows of other parts of the same line, checked frame by frame.
    checks = 200 if quick else 1000
    false_flags = []
    for _ in range(checks):
        recent = normal[rng.choice(len(normal), window, replace=False)]
        report = compare_windows(reference, recent, settings)
        if report.drifted:
            false_flags.append(report.summary().replace("\n", "; "))
    started = time.perf_counter()
    for _ in range(50):
        compare_windows(reference, normal[:window], settings)
    compare_ms = (time.perf_counter() - started) / 50 * 1000

    def describe(n):
        ok = n[np.isfinite(n)]
        missed = int(np.isnan(n).sum())
        return (f"median {np.median(ok):.0f}, 90th percentile {np.percentile(ok, 90):.0f}, "
                f"max {ok.max():.0f}" + (f"; {missed} never flagged" if missed else ""))

    blur_right = trials - len(blur_wrong) - int(np.isnan(blur_n).sum())
    dark_right = trials - len(dark_wrong) - int(np.isnan(dark_n).sum())

    def named_instead(wrong):
        return f"; named first instead: {' / '.join(sorted(set(wrong)))}" if wrong else ""

    rows = [
        [f"Gaussian blur σ {sigma:.2f} px: sharpness −{sharp_loss:.0%}", describe(blur_n),
         f"lens or focus, equipment ({blur_right} of {trials}{named_instead(blur_wrong)})"],
        [f"light × 0.7: brightness −{light_loss:.0%}", describe(dark_n),
         f"lighting or exposure, equipment ({dark_right} of {trials}{named_instead(dark_wrong)})"],
        ["stable camera (other parts, same line)",
         f"{len(false_flags)} of {checks} independent windows flagged",
         " / ".join(sorted(set(false_flags))) or "—"],
    ]
    body = (f"Frames: `make_sample(sample_seed({seed}, i), surface='foil')`, 640x640, {count} "
            f"frames ({generate_s:.0f} s to draw): the first {half} are the frozen reference, "
            f"the other {count - half} are the line afterwards. Recent window {window} frames, "
            f"checked at every frame; `DriftSettings()` defaults (PSI ≥ "
            f"{settings.psi_threshold:g} and KS p < {settings.ks_p_value:g}, median moved ≥ "
            f"{settings.min_change:.0%}); {trials} trials per change, frames drawn at random "
            "from the pools.\n\n"
            + table(["camera change", "frames after the change until flagged",
                     "named as (trials right)"], rows)
            + "\n\nThe stable row draws each window at random, so its figure is the chance that "
              "one check falsely names a cause; a stream checked at every frame repeats nearly "
              "the same window, so the alarm built on this (issue 14's alarms) should ask for "
              "the same finding in several consecutive checks or check every few frames."
            + f"\n\n`image_stats` on a 640x640 frame: {stats_ms:.2f} ms (median of runs); "
              f"`compare_windows` ({len(reference)} reference vs {window} recent frames, 11 "
              f"statistics): {compare_ms:.1f} ms.")
    print(body, flush=True)
    return body, {"blur": blur_n, "dark": dark_n, "stats_ms": stats_ms,
                  "sharp_loss": sharp_loss, "light_loss": light_loss}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--quick", action="store_true", help="fewer lines and frames (smoke run)")
    parser.add_argument("--seed", type=int, default=20261125)
    parser.add_argument("--no-write", action="store_true", help="print, leave BENCHMARKS.md")
    args = parser.parse_args()
    print(f"seed {args.seed} on {machine()}{' (quick)' if args.quick else ''}", flush=True)
    started = time.perf_counter()
    spc_body, figures = spc_section(args.quick, args.seed)
    drift_body, drift = drift_section(args.quick, args.seed)
    elapsed = time.perf_counter() - started

    ewma_label = next(label for label in figures if label.startswith("EWMA"))
    met = [label for label, (*_, ok) in figures.items() if ok]
    blur_ok = drift["blur"][np.isfinite(drift["blur"])]
    dark_ok = drift["dark"][np.isfinite(drift["dark"])]
    summary = (
        f"Goal (issue 14): a 2% → 4% step alarmed within {GOAL_PARTS} parts on average while a "
        f"stable 2% line raises fewer than {GOAL_RATE:g} false alarm per 10,000 parts: "
        + (f"**met** by {', '.join(met)}" if met else "**not met** by any chart")
        + f"; the classical p-chart with all Western Electric rules at n = 50 raises "
          f"{figures[CHARTS[0][0]][0]:.1f} false alarms per 10,000 parts. EWMA: "
          f"{figures[ewma_label][2][1][0]:.0f} parts at {figures[ewma_label][0]:.2f}/10k. "
          f"Drift: {drift['sharp_loss']:.0%} less sharpness named lens/focus after a median of "
          f"{np.median(blur_ok):.0f} frames (90% within {np.percentile(blur_ok, 90):.0f}); "
          f"{drift['light_loss']:.0%} less light named lighting after {np.median(dark_ok):.0f} "
          f"(90% within "
          f"{np.percentile(dark_ok, 90):.0f}).")
    body = (
        "## Plant analytics: SPC and drift (bench/analytics/run.py)\n\n"
        f"Seed {args.seed}{', `--quick`' if args.quick else ''}; {elapsed:.0f} s in all.\n\n"
        f"{summary}\n\n"
        f"### Defect-rate charts: 2% defective, subgroups of {N} parts\n\n"
        "Simulated lines, each part defective with probability p (binomial counts per "
        "subgroup, Bernoulli per part). Limits are frozen at the known 2%. Only alarms that "
        f"say the rate went up count. ARL: steady state, the step comes after {WARMUP * N} "
        "parts at 2%; mean ± standard error over the lines, in parts after the step. The "
        "EWMA and CUSUM parameters were chosen by simulation for < 1 false alarm per 10,000 "
        "parts at 2%.\n\n"
        f"{spc_body}\n\n"
        "### Camera drift\n\n"
        f"{drift_body}")
    if not args.no_write:
        write_section("analytics", body)
        print("BENCHMARKS.md: section analytics written")
    print(summary)


if __name__ == "__main__":
    main()
