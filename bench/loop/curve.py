"""Score against labels spent: the area under each arm's curve, labels per point gained,
and the plot.

    from bench.loop.curve import area, labels_per_point, plot
    area([(0, 0.30), (25, 0.40), (50, 0.45), (100, 0.50)])   # 0.4375: the mean score over 0-100 labels
    labels_per_point(spent=50, score=0.45, start=0.30)        # 3.33 labels per point of mAP50

`area` is the trapezoid area under the curve from the start model (0 labels) to the last
budget (level after an arm's last point), divided by that budget: the curve's mean score,
in the score's own units, so arms and runs with the same budgets compare directly.
"""

from __future__ import annotations

import itertools
import math
from collections.abc import Mapping, Sequence
from pathlib import Path


def area(points: Sequence[tuple[float, float]], *, until: float | None = None) -> float:
    """Normalised area under (labels, score) points, sorted by labels; one point: its score.
    With `until` past the last point, the curve stays level to it: an arm that ran out of
    frames to label (FAIL and REVIEW only, on a good line) keeps its model, and the areas
    of all arms cover the same labels."""
    ordered = sorted(points)
    if not ordered:
        raise ValueError("no points")
    if until is not None and until > ordered[-1][0]:
        ordered.append((until, ordered[-1][1]))
    if len(ordered) == 1 or ordered[-1][0] == ordered[0][0]:
        return ordered[-1][1]
    total = sum((x1 - x0) * (y0 + y1) / 2 for (x0, y0), (x1, y1) in itertools.pairwise(ordered))
    return total / (ordered[-1][0] - ordered[0][0])


def labels_per_point(*, spent: float, score: float, start: float) -> float:
    """Labels spent per point (0.01) of score gained over the start model; inf without a gain."""
    gained = (score - start) * 100
    return spent / gained if gained > 0 else math.inf


def plot(curves: Mapping[str, Sequence[Sequence[tuple[float, float]]]], path: Path, *, title: str,
         ylabel: str = "mAP50") -> Path:
    """A PNG of each arm's mean curve (one line per arm, its seeds as faint lines), the
    area in the legend. `curves[arm]` holds one list of (labels, score) per seed."""
    import matplotlib

    matplotlib.use("Agg")  # no display on a bench machine
    import matplotlib.pyplot as plt

    until = max(x for seeds in curves.values() for points in seeds for x, _ in points)
    figure, axes = plt.subplots(figsize=(6.4, 4.0), dpi=120)
    for (arm, seeds), colour in zip(curves.items(), ("tab:blue", "tab:orange", "tab:green", "tab:red"),
                                    strict=False):
        for points in seeds:
            xs, ys = zip(*sorted(points), strict=True)
            axes.plot(xs, ys, color=colour, alpha=0.2, linewidth=1)
        mean = mean_curve(seeds)
        xs, ys = zip(*mean, strict=True)
        axes.plot(xs, ys, color=colour, marker="o", linewidth=2,
                  label=f"{arm} (area {area(mean, until=until):.3f})")
    axes.set_xlabel("labels spent")
    axes.set_ylabel(ylabel)
    axes.set_title(title, fontsize=10)
    axes.grid(alpha=0.3)
    axes.legend(fontsize=8)
    figure.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    figure.savefig(path)
    plt.close(figure)
    return path


def mean_curve(seeds: Sequence[Sequence[tuple[float, float]]]) -> list[tuple[float, float]]:
    """The seeds' curves averaged point by point (each seed's n-th point: the same budget;
    labels spent averaged too, as an arm may spend fewer than its budget)."""
    if not seeds:
        raise ValueError("no curves")
    length = min(len(points) for points in seeds)
    rows = [sorted(points)[:length] for points in seeds]
    return [(sum(r[i][0] for r in rows) / len(rows), sum(r[i][1] for r in rows) / len(rows)) for i in range(length)]
