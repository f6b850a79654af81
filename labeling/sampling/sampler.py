"""Active learning under a budget: which recorded frames go to labeling, and why each one.

Example::

    from labeling.sampling.policy import SamplingPolicy
    from labeling.sampling.sampler import sample

    policy = SamplingPolicy.load()   # labeling/sampling/policy.yaml: every key required
    for pick in sample(db, policy, training=open_version("pcb@latest")):
        print(pick.inspection_id, pick.station, pick.day, [r["reason"] for r in pick.reasons])

(`Bridge.sample` is the same, with the bridge's database, dataset and queue: `qc label sample`.)

Per station and UTC day (the last `window_days`), at most `budget_per_station_day` frames with a
stored image that were never sent to labeling. The policy's strategies (strategies.py) say
why a frame is worth labelling; each has a share of the budget reserved for it, in the
policy's order of priority (an unused share passes on), and what is left of the budget goes
to any candidate by the same priority (random_pass excepted: `takes_leftover`).

A pick records every reason that applies (with its figures: margin, class, share), not only
the one that won it its place. Deterministic: same records, same policy, same picks. Records
are read through the stores' public reads (`RecordStore.with_images_since`, `shadows_of`,
`ReviewStore.latest`).
"""

from __future__ import annotations

from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

from inspection.rules import StationRules, Verdict
from inspection.store.database import Database
from inspection.store.records import InspectionRecord, RecordStore, utcnow
from inspection.store.reviews import ReviewStore
from labeling.sampling.policy import SamplingPolicy
from labeling.sampling.strategies import Candidate, Found, Strategy


class Training(Protocol):
    """The two members of a DatasetVersion the sampler reads (for rare classes)."""

    @property
    def names(self) -> dict[int, str]: ...

    @property
    def entries(self) -> list[dict[str, Any]]: ...

    def label_text(self, entry: Mapping[str, Any]) -> str: ...


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


# A candidate frame and its reasons: (record, {strategy name: what it found}), in policy order.
_Reasons = dict[str, Found]


def sample(db: Database, policy: SamplingPolicy, *, training: Training | None = None, exclude: Iterable[str] = (),
           now: datetime | None = None) -> list[Pick]:
    """The frames to label now under `policy`; `training` is the DatasetVersion the model
    learnt from (for rare classes; None: no class counts as rare); `exclude` the inspections
    already sent."""
    now = now or utcnow()
    excluded = set(exclude)
    store, reviews = RecordStore(db), ReviewStore(db)
    shares = (class_shares((training.label_text(e) for e in training.entries), training.names)
              if training is not None else {})
    records = [r for r in store.with_images_since(now - timedelta(days=policy.window_days)) if r.id not in excluded]
    ids = [r.id for r in records]
    shadows = store.shadows_of(ids)
    latest = reviews.latest(ids)
    strategies: list[Strategy] = list(policy.strategies)
    rules: dict[str, StationRules] = {}
    groups: dict[tuple[str, str], list[tuple[InspectionRecord, _Reasons]]] = defaultdict(list)
    for record in records:
        if record.station_id not in rules:
            rules[record.station_id] = store.station(record.station_id).rules
        candidate = Candidate(record, rules[record.station_id], latest.get(record.id), shadows.get(record.id, []),
                              shares)
        reasons = {s.name: found for s in strategies if (found := s.found(candidate)) is not None}
        if reasons:
            groups[(record.station_id, record.created_at.date().isoformat())].append((record, reasons))
    picks = []
    for (station, day), candidates in sorted(groups.items()):
        picks += _fill(station, day, candidates, policy)
    return picks


def _fill(station: str, day: str, candidates: list[tuple[InspectionRecord, _Reasons]],
          policy: SamplingPolicy) -> list[Pick]:
    budget = policy.budget_per_station_day
    chosen: dict[str, Pick] = {}

    def take(reason: str, limit: int) -> None:
        ranked = sorted((c for c in candidates if reason in c[1]), key=lambda c: (c[1][reason].rank, c[0].id))
        for record, reasons in ranked:
            if len(chosen) >= budget or limit <= 0:
                return
            if record.id in chosen:
                continue
            details = [{"reason": name, **found.detail} for name, found in reasons.items()]
            first = next(d for d in details if d["reason"] == reason)
            chosen[record.id] = Pick(inspection_id=record.id, station=station, day=day,
                                     verdict=Verdict(record.verdict).value,
                                     reasons=[first, *(d for d in details if d is not first)])
            limit -= 1

    carried = 0.0
    for strategy in policy.strategies:  # reserved shares, an unused share passing on
        quota = strategy.share * budget + carried
        before = len(chosen)
        take(strategy.name, int(quota + 1e-9))
        carried = quota - (len(chosen) - before)
    for strategy in policy.strategies:  # what is left of the budget
        if strategy.takes_leftover:
            take(strategy.name, budget)
    return list(chosen.values())
