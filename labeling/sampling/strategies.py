"""The sampler's strategies: each says whether a recorded frame is worth labelling, and why.

Example::

    from labeling.sampling.strategies import LowMargin

    strategy = LowMargin(share=0.15, margin=0.1)
    found = strategy.found(candidate)      # None, or Found({"margin": 0.02, ...}, rank=0.02)

A strategy is one small class: a pydantic model whose fields are its line in the policy file
(`share`, the part of each station-day's budget reserved for it, and its own settings), a
`name` (the reason a pick records) and `found(candidate)`. The sampler (sampler.py) knows
nothing of any one strategy: a new one is a new class and one line of policy
(`- {use: "package.module:ClassName", share: 0.1, ...}`), and nothing else changes.

The strategies shipped, in the shipped policy's priority order:

- anomaly: a box of class `anomaly` (a good-only model's: a frame unlike the good ones),
  strongest first. While a new part is judged by its good-only model these are the frames
  to label with the part's real classes (QC_LABEL_CLASSES), for its first supervised model;
  under a supervised model no frame has such a box, and the share passes to the next lines.
- reviewer_disagreement: the latest review changed the model's call (a false alarm, a missed
  defect, a wrong class); the frame carries the correction already, labelling confirms it.
- shadow_disagreement: the shadow model's verdict or set of classes differs from production's.
- review: the rules sent the frame to the REVIEW band.
- low_margin: a box whose confidence is within `margin` of its class's fail_conf or
  review_conf under the station's current rules (closest first).
- rare_class: a box of a class with fewer than `fraction` of the training boxes.
- random_pass: PASS frames, chosen by a hash of (seed, id): reproducible, and the only way to
  see the defects the model misses entirely.

Set-level strategies (`SetLine`) choose among a station-day's whole candidate set at once,
each frame with the detector's own embedding (labeling/sampling/embeddings.py):

- typical_diverse (cold start, small budgets; TypiClust, Hacohen et al. 2022): the candidates
  clustered with as many clusters as the strategy's part of the budget (plus one per frame
  already picked, whose clusters count as covered), and the densest frame of each uncovered
  cluster, largest clusters first.
- uncertain_diverse (later rounds; after PPAL, CVPR 2024): each frame's uncertainty is its most
  uncertain box (1 - |2 confidence - 1|) weighted by its class's weakness on the holdout
  (1 - AP50; 1 for a class with no holdout figure), the `pool_factor` x budget most uncertain
  kept, then spread by greedy k-center over the embeddings, away from the frames already
  picked.
- class_quota: every class the model predicted in the station-day gets at least `min_share`
  of the budget (at least one frame), rarest classes first, the frames closest to their
  class's thresholds first: rare defect classes are not starved by frequent ones. Listed
  first it guarantees the minimum; later, it tops up what the lines before it left short.
- flip_disagreement (after CALD, Yu et al. 2022): the frames on which the production detector
  disagrees most with itself on the frame's mirror image (flips.py says how it is scored),
  at least `min_disagreement`. Offered, not shipped in policy.yaml: not yet measured by
  bench/loop against random picks.
"""

from __future__ import annotations

import hashlib
import math
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

import numpy as np
from pydantic import BaseModel, ConfigDict, Field

from inspection.rules import ANOMALY_CLASS, StationRules, Verdict
from inspection.store.records import InspectionRecord
from inspection.store.reviews import BoxDecision, FrameDecision, Review
from labeling.sampling.clustering import k_center, kmeans, typicality


@dataclass(frozen=True)
class Candidate:
    """A frame as the strategies see it: its record, its station's current rules, its latest
    review, its shadow results, the share of each class in the training boxes (empty when
    the training data is unknown), the production model's AP50 per class on its holdout
    (empty when unknown), and the frame's embedding and mirror disagreement (each set only for
    set-level strategies that need it; None when its image could not be read)."""

    record: InspectionRecord
    rules: StationRules
    review: Review | None = None
    shadows: list[dict[str, Any]] = field(default_factory=list)
    training_shares: dict[str, float] = field(default_factory=dict)
    class_ap: Mapping[str, float] = field(default_factory=dict)
    embedding: np.ndarray | None = field(default=None, compare=False, repr=False)
    # The frame's disagreement with its mirror image and its figures (flips.py), set only for
    # flip_disagreement; None when it was not measured.
    flip: tuple[float, dict[str, Any]] | None = field(default=None, compare=False, repr=False)

    @property
    def id(self) -> str:
        return self.record.id

    @property
    def classes(self) -> set[str]:
        return {d["class"] for d in self.record.detections}

    @property
    def verdict(self) -> Verdict:
        return Verdict(self.record.verdict)


@dataclass(frozen=True)
class Found:
    """Why a strategy wants a frame (`detail`, recorded with the pick after its reason's name),
    and where it ranks among the strategy's candidates (lowest first; ties by inspection id)."""

    detail: dict[str, Any]
    rank: float = 0.0


class Strategy(Protocol):
    """What the sampler asks of a strategy."""

    name: ClassVar[str]  # the reason a pick records
    # False: the strategy gets its reserved share only, none of the budget left over
    # (random_pass: the rest of the budget goes to frames that gave a reason to look).
    takes_leftover: ClassVar[bool]

    @property
    def share(self) -> float:
        """The part of each station-day's budget reserved for this strategy."""
        ...

    def found(self, candidate: Candidate) -> Found | None: ...


class PolicyLine(BaseModel):
    """A strategy's line in the policy: its share of the budget; subclasses add their settings.
    Every field is required (a policy says what it does)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    name: ClassVar[str]
    takes_leftover: ClassVar[bool] = True
    share: float = Field(ge=0, le=1)

    def found(self, candidate: Candidate) -> Found | None:
        raise NotImplementedError(f"{type(self).__name__} must say what it finds: define found(candidate)")


class Anomaly(PolicyLine):
    name: ClassVar[str] = "anomaly"

    def found(self, candidate: Candidate) -> Found | None:
        scores = [d["confidence"] for d in candidate.record.detections if d["class"] == ANOMALY_CLASS]
        if not scores:
            return None
        return Found({"boxes": len(scores), "confidence": round(max(scores), 4)}, rank=round(1 - max(scores), 4))


class ReviewerDisagreement(PolicyLine):
    name: ClassVar[str] = "reviewer_disagreement"

    def found(self, candidate: Candidate) -> Found | None:
        review = candidate.review
        if review is None or review.decision is FrameDecision.RETRACTED:
            return None
        # An undecided box is no disagreement: the reviewer has not judged it.
        changed = [b for b in review.boxes if b.decision not in (BoxDecision.CONFIRMED, BoxDecision.UNDECIDED)]
        if not changed and not (review.decision is FrameDecision.FALSE_ALARM and candidate.verdict is not Verdict.PASS):
            return None
        return Found({"reviewer": review.reviewer, "decision": review.decision.value,
                      "boxes": dict(Counter(b.decision.value for b in changed))})


class ShadowDisagreement(PolicyLine):
    name: ClassVar[str] = "shadow_disagreement"

    def found(self, candidate: Candidate) -> Found | None:
        production = {d["class"] for d in candidate.record.detections}
        verdict = candidate.verdict.value
        for shadow in candidate.shadows:
            theirs = {d["class"] for d in shadow["detections"]}
            if shadow["verdict"] != verdict or theirs != production:
                return Found({"shadow": f"{shadow['model_name']}@{shadow['model_version']}",
                              "shadow_verdict": shadow["verdict"], "verdict": verdict})
        return None


class ReviewBand(PolicyLine):
    name: ClassVar[str] = "review"

    def found(self, candidate: Candidate) -> Found | None:
        if candidate.verdict is not Verdict.REVIEW:
            return None
        return Found({"rule": candidate.record.rule})


class LowMargin(PolicyLine):
    name: ClassVar[str] = "low_margin"
    margin: float = Field(gt=0, le=1)  # confidence distance to a threshold that counts as uncertain

    def found(self, candidate: Candidate) -> Found | None:
        margins = []
        for d in candidate.record.detections:
            rule = candidate.rules.for_class(d["class"])
            margin = min(abs(d["confidence"] - rule.fail_conf), abs(d["confidence"] - rule.review_conf))
            if margin < self.margin:
                margins.append((margin, d))
        if not margins:
            return None
        margin, d = min(margins, key=lambda m: m[0])
        return Found({"margin": round(margin, 4), "class": d["class"], "confidence": d["confidence"]},
                     rank=round(margin, 4))


class RareClass(PolicyLine):
    name: ClassVar[str] = "rare_class"
    fraction: float = Field(ge=0, le=1)  # a class with fewer than this share of the training boxes

    def found(self, candidate: Candidate) -> Found | None:
        shares = candidate.training_shares
        if not shares:
            return None
        rare = sorted({d["class"] for d in candidate.record.detections if shares.get(d["class"], 0.0) < self.fraction})
        if not rare:
            return None
        return Found({"classes": rare, "training_share": {c: round(shares.get(c, 0.0), 4) for c in rare}})


class RandomPass(PolicyLine):
    name: ClassVar[str] = "random_pass"
    takes_leftover: ClassVar[bool] = False
    seed: int  # the picks are a hash of (seed, inspection id)

    def found(self, candidate: Candidate) -> Found | None:
        if candidate.verdict is not Verdict.PASS:
            return None
        value = round(draw(self.seed, candidate.record.id), 6)
        return Found({"draw": value}, rank=value)


@dataclass(frozen=True)
class Selection:
    """What a set-level strategy knows of the station-day beyond its pool: the whole budget and
    the frames picked before it (by the lines above it in the policy)."""

    budget: int
    chosen: Sequence[Candidate] = ()


class SetLine(PolicyLine):
    """A strategy that chooses among the whole candidate set (`choose`), not frame by frame.
    It gets its reserved share only (`takes_leftover` False): a set-level choice made for a
    part of the budget is not stretched to the rest."""

    takes_leftover: ClassVar[bool] = False
    needs_embeddings: ClassVar[bool] = False  # the sampler computes them only when a line needs them
    needs_flips: ClassVar[bool] = False  # likewise the frames' disagreement with their mirror image

    def found(self, candidate: Candidate) -> Found | None:
        return None  # no reason of its own per frame: its picks carry their figures from `choose`

    def choose(self, pool: Sequence[Candidate], limit: int, selection: Selection) -> list[tuple[Candidate, Found]]:
        """Up to `limit` frames of `pool` (never picked yet), in the order taken, with why."""
        raise NotImplementedError(f"{type(self).__name__} must say what it chooses: define choose()")


def _vectors(candidates: Sequence[Candidate]) -> np.ndarray:
    return np.asarray([c.embedding for c in candidates], dtype=np.float64)


class TypicalDiverse(SetLine):
    name: ClassVar[str] = "typical_diverse"
    needs_embeddings: ClassVar[bool] = True
    neighbours: int = Field(ge=1)  # the nearest neighbours a frame's density is measured over (TypiClust: 20)
    seed: int  # of the k-means seeding: same frames, same seed, same picks

    def choose(self, pool: Sequence[Candidate], limit: int, selection: Selection) -> list[tuple[Candidate, Found]]:
        pool = [c for c in pool if c.embedding is not None]
        covered = [c for c in selection.chosen if c.embedding is not None]
        if not pool or limit <= 0:
            return []
        points = _vectors([*pool, *covered])
        labels = kmeans(points, limit + len(covered), seed=self.seed)
        taken_clusters = {int(label) for label in labels[len(pool):]}
        clusters = sorted({int(label) for label in labels[:len(pool)]} - taken_clusters,
                          key=lambda c: (-int((labels == c).sum()), c))
        picks = []
        for cluster in clusters[:limit]:
            members = [i for i in range(len(pool)) if labels[i] == cluster]
            density = typicality(points[members], self.neighbours)
            best = max(range(len(members)), key=lambda j: (density[j], -j))
            size = int((labels == cluster).sum())
            picks.append((pool[members[best]], Found({"cluster_size": size, "clusters": int(labels.max()) + 1,
                                                      "typicality": round(float(density[best]), 4)},
                                                     rank=-size)))
        return picks


class UncertainDiverse(SetLine):
    name: ClassVar[str] = "uncertain_diverse"
    needs_embeddings: ClassVar[bool] = True
    pool_factor: float = Field(ge=1)  # the most uncertain `pool_factor` x budget frames are spread by k-center

    def choose(self, pool: Sequence[Candidate], limit: int, selection: Selection) -> list[tuple[Candidate, Found]]:
        if limit <= 0:
            return []
        scored = [(u, c) for c in pool if c.embedding is not None and (u := uncertainty(c))[0] > 0]
        scored.sort(key=lambda s: (-s[0][0], s[1].id))
        kept = scored[:math.ceil(self.pool_factor * limit - 1e-9)]
        if not kept:
            return []
        centres = [c.embedding for c in selection.chosen if c.embedding is not None]
        spread = k_center(_vectors([c for _, c in kept]), limit,
                          centres=np.asarray(centres, dtype=np.float64) if centres else None)
        picks = []
        for index, distance in spread:
            (score, detail), candidate = kept[index]
            picks.append((candidate, Found({**detail, "uncertainty": round(score, 4),
                                            "distance": None if distance is None else round(distance, 4),
                                            "pool": len(kept)}, rank=-score)))
        return picks


def uncertainty(candidate: Candidate) -> tuple[float, dict[str, Any]]:
    """The frame's uncertainty: its most uncertain box, 1 - |2 confidence - 1| (1 at 0.5, 0 at
    0 or 1), times its class's weakness on the holdout, 1 - AP50 (1 when the class has no
    holdout figure). (0.0, {}) for a frame without boxes."""
    best: tuple[float, dict[str, Any]] = (0.0, {})
    for d in candidate.record.detections:
        ap = candidate.class_ap.get(d["class"])
        weakness = 1.0 - ap if ap is not None else 1.0
        score = (1.0 - abs(2 * float(d["confidence"]) - 1.0)) * weakness
        if score > best[0]:
            best = (score, {"class": d["class"], "confidence": d["confidence"],
                            "class_ap": None if ap is None else round(ap, 4)})
    return best


class ClassQuota(SetLine):
    name: ClassVar[str] = "class_quota"
    min_share: float = Field(gt=0, le=1)  # of each station-day's budget, for every class predicted there

    def choose(self, pool: Sequence[Candidate], limit: int, selection: Selection) -> list[tuple[Candidate, Found]]:
        minimum = max(1, math.ceil(self.min_share * selection.budget - 1e-9))
        frequency = Counter(cls for c in pool for cls in c.classes)
        have = Counter(cls for c in selection.chosen for cls in c.classes)
        order = sorted(frequency, key=lambda cls: (frequency[cls], cls))  # rarest first
        ranked = {cls: sorted((c for c in pool if cls in c.classes), key=lambda c: (_margin(c, cls), c.id))
                  for cls in order}
        picks: list[tuple[Candidate, Found]] = []
        taken: set[str] = set()
        while len(picks) < limit:
            progressed = False
            for cls in order:  # round by round, one frame per class short of its minimum
                if len(picks) >= limit:
                    break
                if have[cls] >= minimum:
                    continue
                candidate = next((c for c in ranked[cls] if c.id not in taken), None)
                if candidate is None:
                    continue
                taken.add(candidate.id)
                have.update(candidate.classes)
                margin = _margin(candidate, cls)
                picks.append((candidate, Found({"class": cls, "minimum": minimum, "frames_of_class": frequency[cls],
                                                "margin": round(margin, 4)}, rank=margin)))
                progressed = True
            if not progressed:
                break
        return picks


class FlipDisagreement(SetLine):
    name: ClassVar[str] = "flip_disagreement"
    needs_flips: ClassVar[bool] = True
    min_disagreement: float = Field(ge=0, le=1)  # a frame the two passes disagree on less is not picked

    def choose(self, pool: Sequence[Candidate], limit: int, selection: Selection) -> list[tuple[Candidate, Found]]:
        scored = [(flip, c) for c in pool
                  if (flip := c.flip) is not None and flip[0] > 0 and flip[0] >= self.min_disagreement]
        scored.sort(key=lambda s: (-s[0][0], s[1].id))
        return [(c, Found({"disagreement": round(score, 4), **detail}, rank=-score))
                for (score, detail), c in scored[:max(limit, 0)]]


def _margin(candidate: Candidate, cls: str) -> float:
    """How close the class's closest box is to the class's fail or review threshold."""
    rule = candidate.rules.for_class(cls)
    return min(min(abs(d["confidence"] - rule.fail_conf), abs(d["confidence"] - rule.review_conf))
               for d in candidate.record.detections if d["class"] == cls)


def draw(seed: int, inspection_id: str) -> float:
    """A reproducible number in [0, 1) for (seed, inspection id)."""
    digest = hashlib.sha256(f"{seed}:{inspection_id}".encode()).hexdigest()
    return int(digest[:12], 16) / 16**12


SHIPPED: tuple[type[PolicyLine], ...] = (Anomaly, ReviewerDisagreement, ShadowDisagreement, ReviewBand, LowMargin,
                                        RareClass, RandomPass, TypicalDiverse, UncertainDiverse, ClassQuota,
                                        FlipDisagreement)
"""The strategies a policy names by their `name` alone; any other by "module:ClassName"."""
