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

Set-level strategies (`SetLine`: typical_diverse, uncertain_diverse, class_quota,
flip_disagreement) take their share in the same order of priority, choosing among the
station-day's whole candidate set (every frame with a stored image, with or without a reason
of its own) and knowing what the lines above them picked. Those that need the detector's
embeddings get them from `embeddings` (labeling/sampling/embeddings.py), and
flip_disagreement gets each frame's disagreement with its mirror from `flips`
(labeling/sampling/flips.py): each computed per station-day, and only when such a line is in
the policy.

A pick records every reason that applies (with its figures: margin, class, share), not only
the one that won it its place. Deterministic: same records, same policy, same picks. Records
are read through the stores' public reads (`RecordStore.with_images_since`, `shadows_of`,
`ReviewStore.latest`).
"""

from __future__ import annotations

import dataclasses
import logging
from collections import Counter, defaultdict
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Protocol

import numpy as np

from inspection.rules import StationRules, Verdict
from inspection.store.database import Database
from inspection.store.records import InspectionRecord, RecordStore, utcnow
from inspection.store.reviews import ReviewStore
from labeling.sampling.policy import SamplingPolicy
from labeling.sampling.strategies import Candidate, Found, Selection, SetLine, Strategy

log = logging.getLogger(__name__)


class Training(Protocol):
    """The two members of a DatasetVersion the sampler reads (for rare classes)."""

    @property
    def names(self) -> dict[int, str]: ...

    @property
    def entries(self) -> list[dict[str, Any]]: ...

    def label_text(self, entry: Mapping[str, Any]) -> str: ...


class Embeddings(Protocol):
    """Where set-level strategies get each frame's embedding (labeling/sampling/embeddings.py)."""

    def vectors(self, records: Sequence[InspectionRecord]) -> dict[str, np.ndarray]:
        """One vector per inspection id; a frame whose image cannot be read is left out."""
        ...


class Flips(Protocol):
    """Where flip_disagreement gets each frame's disagreement with its mirror (labeling/sampling/flips.py)."""

    def scores(self, records: Sequence[InspectionRecord]) -> dict[str, tuple[float, dict[str, Any]]]:
        """One (score, figures) per inspection id; a frame whose image cannot be read is left out."""
        ...


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


# A candidate frame and its reasons: (candidate, {strategy name: what it found}), in policy order.
_Reasons = dict[str, Found]


def sample(db: Database, policy: SamplingPolicy, *, training: Training | None = None, exclude: Iterable[str] = (),
           now: datetime | None = None, embeddings: Embeddings | None = None, flips: Flips | None = None,
           class_ap: Mapping[str, float] | None = None) -> list[Pick]:
    """The frames to label now under `policy`; `training` is the DatasetVersion the model
    learnt from (for rare classes; None: no class counts as rare); `exclude` the inspections
    already sent; `embeddings` the detector's features (needed by typical_diverse and
    uncertain_diverse); `flips` each frame's disagreement with its mirror (needed by
    flip_disagreement); `class_ap` the production model's AP50 per class on its holdout
    (uncertain_diverse's class weakness)."""
    now = now or utcnow()
    excluded = set(exclude)
    needing = [s.name for s in policy.strategies if isinstance(s, SetLine) and s.needs_embeddings]
    needing_flips = [s.name for s in policy.strategies if isinstance(s, SetLine) and s.needs_flips]
    # Loud, not fatal: the shipped policy lists these lines, and a station sampled before any
    # model is promoted still gets its frames from the other lines (the share passes on).
    for names, given, what in ((needing, embeddings, "the detector's embeddings of each frame"),
                               (needing_flips, flips, "the detector's passes over each frame and its mirror")):
        if names and given is None:
            log.warning("strategy %s picks nothing without %s: sample with a production model "
                        "(qc models promote), or leave the line out of the policy", ", ".join(names), what)
    set_level = any(isinstance(s, SetLine) for s in policy.strategies)
    store, reviews = RecordStore(db), ReviewStore(db)
    shares = (class_shares((training.label_text(e) for e in training.entries), training.names)
              if training is not None else {})
    records = [r for r in store.with_images_since(now - timedelta(days=policy.window_days)) if r.id not in excluded]
    ids = [r.id for r in records]
    shadows = store.shadows_of(ids)
    latest = reviews.latest(ids)
    strategies: list[Strategy] = list(policy.strategies)
    rules: dict[str, StationRules] = {}
    groups: dict[tuple[str, str], list[tuple[Candidate, _Reasons]]] = defaultdict(list)
    for record in records:
        if record.station_id not in rules:
            rules[record.station_id] = store.station(record.station_id).rules
        candidate = Candidate(record, rules[record.station_id], latest.get(record.id), shadows.get(record.id, []),
                              shares, dict(class_ap or {}))
        reasons = {s.name: found for s in strategies if (found := s.found(candidate)) is not None}
        if reasons or set_level:  # a set-level strategy chooses among every frame, reason or not
            groups[(record.station_id, record.created_at.date().isoformat())].append((candidate, reasons))
    picks = []
    for (station, day), frames in sorted(groups.items()):
        # Per station-day: only the frames this run may pick get the second passes.
        group = frames
        if needing and embeddings is not None:
            vectors = embeddings.vectors([c.record for c, _ in group])
            group = [(dataclasses.replace(c, embedding=vectors.get(c.id)), r) for c, r in group]
        if needing_flips and flips is not None:
            mirrored = flips.scores([c.record for c, _ in group])
            group = [(dataclasses.replace(c, flip=mirrored.get(c.id)), r) for c, r in group]
        picks += _fill(station, day, group, policy)
    return picks


def _fill(station: str, day: str, candidates: list[tuple[Candidate, _Reasons]],
          policy: SamplingPolicy) -> list[Pick]:
    budget = policy.budget_per_station_day
    chosen: dict[str, Pick] = {}
    picked: list[Candidate] = []

    def keep(candidate: Candidate, reasons: _Reasons, first: dict[str, Any]) -> None:
        details = [{"reason": name, **found.detail} for name, found in reasons.items() if name != first["reason"]]
        record = candidate.record
        chosen[record.id] = Pick(inspection_id=record.id, station=station, day=day,
                                 verdict=Verdict(record.verdict).value, reasons=[first, *details])
        picked.append(candidate)

    def take(reason: str, limit: int) -> None:
        ranked = sorted((c for c in candidates if reason in c[1]), key=lambda c: (c[1][reason].rank, c[0].id))
        for candidate, reasons in ranked:
            if len(chosen) >= budget or limit <= 0:
                return
            if candidate.id in chosen:
                continue
            keep(candidate, reasons, {"reason": reason, **reasons[reason].detail})
            limit -= 1

    def choose(strategy: SetLine, limit: int) -> None:
        limit = min(limit, budget - len(chosen))
        reasons_of = {c.id: r for c, r in candidates}
        pool = [c for c, _ in candidates if c.id not in chosen]
        for candidate, found in strategy.choose(pool, limit, Selection(budget, list(picked)))[:max(limit, 0)]:
            if candidate.id not in chosen:
                keep(candidate, reasons_of[candidate.id], {"reason": strategy.name, **found.detail})

    carried = 0.0
    for strategy in policy.strategies:  # reserved shares, an unused share passing on
        quota = strategy.share * budget + carried
        before = len(chosen)
        if isinstance(strategy, SetLine):
            choose(strategy, int(quota + 1e-9))
        else:
            take(strategy.name, int(quota + 1e-9))
        carried = quota - (len(chosen) - before)
    for strategy in policy.strategies:  # what is left of the budget
        if strategy.takes_leftover:
            if isinstance(strategy, SetLine):
                choose(strategy, budget)
            else:
                take(strategy.name, budget)
    return list(chosen.values())
