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
"""

from __future__ import annotations

import hashlib
from collections import Counter
from dataclasses import dataclass, field
from typing import Any, ClassVar, Protocol

from pydantic import BaseModel, ConfigDict, Field

from inspection.rules import ANOMALY_CLASS, StationRules, Verdict
from inspection.store.records import InspectionRecord
from inspection.store.reviews import BoxDecision, FrameDecision, Review


@dataclass(frozen=True)
class Candidate:
    """A frame as the strategies see it: its record, its station's current rules, its latest
    review, its shadow results, and the share of each class in the training boxes (empty when
    the training data is unknown)."""

    record: InspectionRecord
    rules: StationRules
    review: Review | None = None
    shadows: list[dict[str, Any]] = field(default_factory=list)
    training_shares: dict[str, float] = field(default_factory=dict)

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
        changed = [b for b in review.boxes if b.decision is not BoxDecision.CONFIRMED]
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
        draw = round(_draw(self.seed, candidate.record.id), 6)
        return Found({"draw": draw}, rank=draw)


def _draw(seed: int, inspection_id: str) -> float:
    digest = hashlib.sha256(f"{seed}:{inspection_id}".encode()).hexdigest()
    return int(digest[:12], 16) / 16**12


SHIPPED: tuple[type[PolicyLine], ...] = (Anomaly, ReviewerDisagreement, ShadowDisagreement, ReviewBand, LowMargin,
                                        RareClass, RandomPass)
"""The strategies a policy names by their `name` alone; any other by "module:ClassName"."""
