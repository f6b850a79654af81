"""Promotion: the gate applied to registry entries, shared by `qc models promote` and the API.

The gate compares evaluations stored in the model cards under the name of the frozen holdout
(`card["evaluations"]["pcb@v3"]`), so the service never evaluates on the line PC; the CLI
computes missing evaluations first (qc/commands/models.py).

A version must *load* before any pointer moves to it, forced or not: `load_check` opens it
with ONNX Runtime and runs one warm-up batch, as the service will. `--force` skips the gate,
never this: a forced promotion of a model that does not load used to move the pointer, leave
the running service on the old model and make the next start fail (issue 9).

Example::

    decision = promote(registry, "pcb", "v4")     # raises PromotionRefused with the table
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, Literal

from inspection.errors import Conflict, ModelError, PromotionRefused
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


def load_check(entry: ModelVersion, *, providers: Sequence[str] | None = None) -> None:
    """`ModelError` unless `entry` opens with ONNX Runtime and runs one warm-up batch, on the
    providers the service uses (QC_PROVIDERS by default)."""
    from inspection.detect.detector import Detector
    from inspection.settings import Settings

    try:
        Detector(entry.model_path, providers=providers or Settings().provider_list(), conf=0.01)
    except Exception as error:  # any failure to open or run: the version cannot serve
        raise ModelError(f"{entry.ref} does not load ({error}); no pointer was moved: fix or "
                         f"replace the model (qc models add) and promote that") from error


def promote(registry: Registry, name: str, version: str, *, policy: GatePolicy | None = None,
            force: bool = False, decision: GateDecision | Literal["check"] | None = "check",
            load: bool = True) -> dict[str, Any]:
    """Gate, load-check, then move the production pointer. `force` skips the gate (recorded
    as such), never the load check. `decision` is what `check` returned, for a caller that ran
    it already (to show the table): the gate then runs once; by default `promote` runs it.
    `load=False` skips the load check, only for a caller that has just loaded the version
    itself (the service's API does, to switch to it)."""
    if force:
        decision = None
    elif isinstance(decision, str):  # "check"
        decision = check(registry, name, version, policy=policy)
    passed(decision, name=name, version=version)
    entry = registry.get(name, version)
    if load and registry.production_version(name) != version:
        load_check(entry)
    return registry.set_production(name, version, reason="forced" if force else "promote")


def rollback(registry: Registry, name: str) -> dict[str, Any]:
    """Production back to the newest earlier production version that loads."""
    return registry.rollback(name, loadable=load_check)


def passed(decision: GateDecision | None, *, name: str, version: str) -> None:
    """`PromotionRefused`, with the comparison table, unless the gate let `version` through."""
    if decision is not None and not decision.accepted:
        raise PromotionRefused(f"{name}@{version} refused by the promotion gate:\n{decision.table()}")
