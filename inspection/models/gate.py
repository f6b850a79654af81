"""The promotion gate: a candidate replaces production only if it is not worse on the holdout.

Rules (both configurable, defaults from the training issue):
- its mAP50-95 is not lower than production's by more than `max_map_drop` (0.005), and
- no class's recall at the deploy threshold drops by more than `max_recall_drop` (0.02): a
  model better on average but blind to one defect class would let those parts ship.

Example::

    >>> decision = compare(
    ...     {"map50_95": 0.50, "per_class": {"scratch": {"recall": 0.90}}},
    ...     {"map50_95": 0.52, "per_class": {"scratch": {"recall": 0.80}}},
    ... )
    >>> decision.accepted
    False
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class GatePolicy:
    max_map_drop: float = 0.005
    max_recall_drop: float = 0.02


@dataclass(frozen=True)
class Row:
    metric: str
    candidate: float
    production: float
    allowed_drop: float

    @property
    def change(self) -> float:
        return self.candidate - self.production

    @property
    def passed(self) -> bool:
        return self.change >= -self.allowed_drop - 1e-12


@dataclass(frozen=True)
class GateDecision:
    accepted: bool
    rows: list[Row] = field(default_factory=list)

    def table(self) -> str:
        lines = [f"{'metric':<28} {'candidate':>10} {'production':>10} {'change':>8} {'allowed':>8}  result"]
        lines += [
            f"{row.metric:<28} {row.candidate:>10.4f} {row.production:>10.4f} "
            f"{row.change:>+8.4f} {-row.allowed_drop:>+8.4f}  {'ok' if row.passed else 'REFUSED'}"
            for row in self.rows
        ]
        return "\n".join(lines)


def compare(
    production: dict[str, Any], candidate: dict[str, Any], policy: GatePolicy | None = None
) -> GateDecision:
    """Compare two evaluations (`Evaluation.to_json()` of the same holdout)."""
    policy = policy or GatePolicy()
    rows = [Row("mAP50-95", float(candidate["map50_95"]), float(production["map50_95"]),
                policy.max_map_drop)]
    for name, prod in sorted(production.get("per_class", {}).items()):
        cand = candidate.get("per_class", {}).get(name, {"recall": 0.0})
        rows.append(Row(f"recall[{name}]", float(cand.get("recall", 0.0)),
                        float(prod.get("recall", 0.0)), policy.max_recall_drop))
    return GateDecision(accepted=all(row.passed for row in rows), rows=rows)
