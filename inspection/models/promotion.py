"""Promotion: the gate applied to registry entries, shared by `qc models promote` and the API.

The gate compares evaluations stored in the model cards under the name of the frozen holdout
(`card["evaluations"]["pcb@v3"]`), so the service never evaluates on the line PC; the CLI
computes missing evaluations first (qc/commands/models.py).

Example::

    decision = promote(registry, "pcb", "v4")     # raises PromotionRefused with the table
"""

from __future__ import annotations

from typing import Any, Literal

from inspection.errors import Conflict, PromotionRefused
from inspection.models.gate import GateDecision, GatePolicy, compare
from inspection.models.registry import ModelVersion, Registry


def evaluation_on(entry: ModelVersion, holdout: str) -> dict[str, Any] | None:
    return entry.card.get("evaluations", {}).get(holdout)


def check(registry: Registry, name: str, version: str, *, policy: GatePolicy | None = None
          ) -> GateDecision | None:
    """The gate's decision for `version` against production; None when nothing is in
    production yet (the first model passes)."""
    candidate = registry.get(name, version)
    production_version = registry.production_version(name)
    if production_version is None or production_version == version:
        return None
    production = registry.get(name, production_version)
    holdout = registry.holdout(name)
    if holdout is None:
        raise Conflict(
            f"model {name} has no frozen holdout; set one with qc models holdout {name} DATASET@VERSION"
        )
    candidate_scores, production_scores = (evaluation_on(e, holdout) for e in (candidate, production))
    if candidate_scores is None or production_scores is None:
        missing = [e.ref for e in (candidate, production) if evaluation_on(e, holdout) is None]
        raise Conflict(
            f"{', '.join(missing)} not evaluated on the holdout {holdout}; "
            f"run qc models promote {name} {version} where the holdout data is (it evaluates first)"
        )
    return compare(production_scores, candidate_scores, policy)


def promote(registry: Registry, name: str, version: str, *, policy: GatePolicy | None = None,
            force: bool = False, decision: GateDecision | Literal["check"] | None = "check"
            ) -> dict[str, Any]:
    """Gate, then move the production pointer. `force` skips the gate (recorded as such).
    `decision` is what `check` returned, for a caller that ran it already (to show the table):
    the gate then runs once; by default `promote` runs it."""
    if force:
        decision = None
    elif isinstance(decision, str):  # "check"
        decision = check(registry, name, version, policy=policy)
    passed(decision, name=name, version=version)
    return registry.set_production(name, version, reason="forced" if force else "promote")


def passed(decision: GateDecision | None, *, name: str, version: str) -> None:
    """`PromotionRefused`, with the comparison table, unless the gate let `version` through."""
    if decision is not None and not decision.accepted:
        raise PromotionRefused(f"{name}@{version} refused by the promotion gate:\n{decision.table()}")
