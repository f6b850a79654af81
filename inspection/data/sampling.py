"""Active learning under a budget: which recorded frames go to labeling, and why each one.

Example::

    from inspection.data.sampling import SamplingPolicy, sample

    policy = SamplingPolicy.load("inspection/data/sampling.yaml")   # every key required
    for pick in sample(db, policy, training=open_version("pcb@latest")):
        print(pick.inspection_id, pick.station, pick.day, [r["reason"] for r in pick.reasons])

Per station and UTC day (the last `window_days`), at most `budget_per_station_day` frames with a
stored image that were never sent to labeling. Reasons, in priority order, each with a share
of the budget reserved for it (an unused share passes on):

- reviewer_disagreement: the latest review changed the model's call (a false alarm, a missed
  defect, a wrong class); the frame carries the correction already, labelling confirms it.
- shadow_disagreement: the shadow model's verdict or set of classes differs from production's.
- review: the rules sent the frame to the REVIEW band.
- low_margin: a box whose confidence is within `low_margin` of its class's fail_conf or
  review_conf under the station's current rules (closest first).
- rare_class: a box of a class with fewer than `rare_class_fraction` of the training boxes.
- random_pass: PASS frames, chosen by a hash of (seed, id): reproducible, and the only way to
  see the defects the model misses entirely.

A pick records every reason that applies (with its figures: margin, class, share), not only
the one that won it its place. Deterministic: same records, same policy, same picks.
"""

from __future__ import annotations

import hashlib
from collections import Counter, defaultdict
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator
from sqlalchemy import select

from inspection.errors import ConfigError, validation_problems
from inspection.rules import StationRules, Verdict
from inspection.store.database import Database
from inspection.store.records import RecordStore, _record, utcnow
from inspection.store.reviews import BoxDecision, FrameDecision, ReviewStore
from inspection.store.schema import inspections, shadow_results

REASONS = ("reviewer_disagreement", "shadow_disagreement", "review", "low_margin", "rare_class", "random_pass")


def policy_path() -> Path:
    """The shipped policy, a starting point to copy."""
    return Path(__file__).with_name("sampling.yaml")


class Shares(BaseModel):
    model_config = ConfigDict(extra="forbid")
    reviewer_disagreement: float = Field(ge=0, le=1)
    shadow_disagreement: float = Field(ge=0, le=1)
    review: float = Field(ge=0, le=1)
    low_margin: float = Field(ge=0, le=1)
    rare_class: float = Field(ge=0, le=1)
    random_pass: float = Field(ge=0, le=1)

    @model_validator(mode="after")
    def _at_most_the_budget(self) -> Shares:
        total = sum(getattr(self, r) for r in REASONS)
        if total > 1 + 1e-9:
            raise ValueError(f"the shares add up to {total:.2f}; they may not exceed 1")
        return self


class SamplingPolicy(BaseModel):
    """Every field is required: a policy says what it does (inspection/data/sampling.yaml)."""

    model_config = ConfigDict(extra="forbid")
    budget_per_station_day: int = Field(ge=0)
    window_days: int = Field(ge=1)
    shares: Shares
    low_margin: float = Field(gt=0, le=1)
    rare_class_fraction: float = Field(ge=0, le=1)
    seed: int

    @classmethod
    def load(cls, path: str | Path | None = None) -> SamplingPolicy:
        path = Path(path) if path else policy_path()
        try:
            raw = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError) as error:
            raise ConfigError(f"{path}: cannot read the sampling policy ({error})") from error
        try:
            return cls.model_validate(raw or {})
        except ValidationError as error:
            raise ConfigError(f"{path}: invalid sampling policy: {validation_problems(error)}; "
                              f"see {policy_path()} for every key") from error


@dataclass(frozen=True)
class Pick:
    inspection_id: str
    station: str
    day: str  # UTC date, YYYY-MM-DD
    verdict: str
    reasons: list[dict[str, Any]]  # the first is the one it was picked for


def class_shares(labels: Iterable[str], names: dict[int, str]) -> dict[str, float]:
    """Share of boxes per class name in YOLO label texts (classes never seen: 0)."""
    counts: Counter[str] = Counter()
    for text in labels:
        for line in text.splitlines():
            if line.strip():
                counts[names.get(int(line.split()[0]), line.split()[0])] += 1
    total = sum(counts.values())
    return {name: (counts[name] / total if total else 0.0) for name in {*names.values(), *counts}}


def sample(db: Database, policy: SamplingPolicy, *, training=None, exclude: Iterable[str] = (),
           now=None) -> list[Pick]:
    """The frames to label now under `policy`; `training` is the DatasetVersion the model
    learnt from (for rare classes; None: no class counts as rare); `exclude` the inspections
    already sent."""
    now = now or utcnow()
    excluded = set(exclude)
    store, reviews = RecordStore(db), ReviewStore(db)
    shares = (class_shares((training.label_text(e) for e in training.entries), training.names)
              if training is not None else {})
    since = now - timedelta(days=policy.window_days)
    query = (select(inspections).where(inspections.c.created_at >= since, inspections.c.image_sha256.is_not(None))
             .order_by(inspections.c.id))
    with db.engine.connect() as conn:
        records = [_record(row) for row in conn.execute(query).mappings() if row["id"] not in excluded]
        ids = [r.id for r in records]
        shadows: dict[str, list[dict]] = defaultdict(list)
        for row in conn.execute(select(shadow_results).where(shadow_results.c.inspection_id.in_(ids))).mappings():
            shadows[row["inspection_id"]].append(dict(row))
    latest = reviews.latest(ids)
    rules: dict[str, StationRules] = {}
    groups: dict[tuple[str, str], list[tuple[Any, list[dict[str, Any]]]]] = defaultdict(list)
    for record in records:
        if record.station_id not in rules:
            rules[record.station_id] = store.station(record.station_id).rules
        reasons = _reasons(record, rules[record.station_id], latest.get(record.id), shadows.get(record.id, []),
                           shares, policy)
        if reasons:
            groups[(record.station_id, record.created_at.date().isoformat())].append((record, reasons))
    picks = []
    for (station, day), candidates in sorted(groups.items()):
        picks += _fill(station, day, candidates, policy)
    return picks


def _reasons(record, rules: StationRules, review, shadows, shares, policy) -> list[dict[str, Any]]:
    found: list[dict[str, Any]] = []
    verdict = Verdict(record.verdict)
    if review is not None and review.decision is not FrameDecision.RETRACTED:
        changed = [b for b in review.boxes if b.decision is not BoxDecision.CONFIRMED]
        if changed or (review.decision is FrameDecision.FALSE_ALARM and verdict is not Verdict.PASS):
            found.append({"reason": "reviewer_disagreement", "reviewer": review.reviewer,
                          "decision": review.decision.value,
                          "boxes": dict(Counter(b.decision.value for b in changed))})
    production = {d["class"] for d in record.detections}
    for shadow in shadows:
        theirs = {d["class"] for d in shadow["detections"]}
        if shadow["verdict"] != verdict.value or theirs != production:
            found.append({"reason": "shadow_disagreement",
                          "shadow": f"{shadow['model_name']}@{shadow['model_version']}",
                          "shadow_verdict": shadow["verdict"], "verdict": verdict.value})
            break
    if verdict is Verdict.REVIEW:
        found.append({"reason": "review", "rule": record.rule})
    margins = []
    for d in record.detections:
        rule = rules.for_class(d["class"])
        margin = min(abs(d["confidence"] - rule.fail_conf), abs(d["confidence"] - rule.review_conf))
        if margin < policy.low_margin:
            margins.append((margin, d))
    if margins:
        margin, d = min(margins, key=lambda m: m[0])
        found.append({"reason": "low_margin", "margin": round(margin, 4), "class": d["class"],
                      "confidence": d["confidence"]})
    if shares:
        rare = sorted({d["class"] for d in record.detections
                       if shares.get(d["class"], 0.0) < policy.rare_class_fraction})
        if rare:
            found.append({"reason": "rare_class", "classes": rare,
                          "training_share": {c: round(shares.get(c, 0.0), 4) for c in rare}})
    if verdict is Verdict.PASS:
        found.append({"reason": "random_pass", "draw": round(_draw(policy.seed, record.id), 6)})
    return found


def _draw(seed: int, inspection_id: str) -> float:
    digest = hashlib.sha256(f"{seed}:{inspection_id}".encode()).hexdigest()
    return int(digest[:12], 16) / 16**12


def _order(reason: str, candidates):
    def key(item):
        record, reasons = item
        detail = next(r for r in reasons if r["reason"] == reason)
        if reason == "low_margin":
            return (detail["margin"], record.id)
        if reason == "random_pass":
            return (detail["draw"], record.id)
        return (0, record.id)

    return sorted((c for c in candidates if any(r["reason"] == reason for r in c[1])), key=key)


def _fill(station: str, day: str, candidates, policy: SamplingPolicy) -> list[Pick]:
    budget = policy.budget_per_station_day
    chosen: dict[str, Pick] = {}

    def take(reason: str, limit: int) -> None:
        for record, reasons in _order(reason, candidates):
            if len(chosen) >= budget or limit <= 0:
                return
            if record.id in chosen:
                continue
            first = next(r for r in reasons if r["reason"] == reason)
            chosen[record.id] = Pick(inspection_id=record.id, station=station, day=day,
                                     verdict=Verdict(record.verdict).value,
                                     reasons=[first, *(r for r in reasons if r is not first)])
            limit -= 1

    carried = 0.0
    for reason in REASONS:  # reserved shares, an unused share passing on
        quota = getattr(policy.shares, reason) * budget + carried
        before = len(chosen)
        take(reason, int(quota + 1e-9))
        carried = quota - (len(chosen) - before)
    for reason in REASONS[:-1]:  # what is left of the budget: any candidate but random PASS
        take(reason, budget)
    return list(chosen.values())
