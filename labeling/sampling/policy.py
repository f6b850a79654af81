"""The sampler's policy: the budget, the window, and the strategies it runs with their shares.

Example::

    from labeling.sampling.policy import SamplingPolicy

    policy = SamplingPolicy.load()                      # the shipped labeling/sampling/policy.yaml
    policy = SamplingPolicy.load("my-policy.yaml")     # every key required
    [(s.name, s.share) for s in policy.strategies]     # in priority order

Each line of `strategies` is `{use: NAME, share: S, ...settings}`: NAME is a shipped strategy's
name (labeling/sampling/strategies.py) or "package.module:ClassName" for one of your own, a
`PolicyLine` subclass whose other fields are the line's settings. The policy is the one place
that says which strategies run: there is no list of them to edit elsewhere.

Two sections say what enters a dataset version besides Label Studio's annotations (both
optional in a policy file; left out, they are off, as before them):

- `review_labels: {use: true, decisions: [defect, false_alarm], second_pass: false}`: a frame
  a reviewer decided on the review page (every box confirmed, corrected or drawn) is labelled;
  it enters the next version directly (labeling/reviewed.py), and the sampler no longer sends
  it to Label Studio unless `second_pass` asks for one.
- `negatives: {share: 0.1, seed: 0}`: PASS frames of a station enter as background images
  (empty label files) up to `share` of that station's new images in a version, chosen for
  diversity (labeling/negatives.py).
"""

from __future__ import annotations

import importlib
from pathlib import Path
from typing import Any

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from inspection.errors import ConfigError, validation_problems
from inspection.store.reviews import FrameDecision
from labeling.sampling.strategies import SHIPPED, PolicyLine


def policy_path() -> Path:
    """The shipped policy, a starting point to copy."""
    return Path(__file__).with_name("policy.yaml")


def strategy_class(use: str) -> type[PolicyLine]:
    """The class a policy line's `use` names: a shipped strategy's name, or "module:ClassName"."""
    for shipped in SHIPPED:
        if shipped.name == use:
            return shipped
    module_name, _, class_name = use.partition(":")
    if not class_name:
        raise ValueError(f"unknown strategy {use!r}; use one of {', '.join(s.name for s in SHIPPED)} "
                         "or 'package.module:ClassName' for your own")
    try:
        found = getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError) as error:
        raise ValueError(f"strategy {use!r} cannot be imported ({error})") from error
    if not (isinstance(found, type) and issubclass(found, PolicyLine)):
        raise ValueError(f"strategy {use!r} is not a PolicyLine subclass (labeling/sampling/strategies.py)")
    return found


class ReviewLabels(BaseModel):
    """Whether frames decided on the review page are labels (every key required)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    use: bool
    decisions: list[FrameDecision] = Field(min_length=1)  # the frame decisions that count: defect, false_alarm
    second_pass: bool  # send them to Label Studio as well (the sampler may pick them)

    @field_validator("decisions")
    @classmethod
    def _no_retraction(cls, decisions: list[FrameDecision]) -> list[FrameDecision]:
        if FrameDecision.RETRACTED in decisions:
            raise ValueError("a retraction is no label; list defect and/or false_alarm")
        return decisions


class Negatives(BaseModel):
    """PASS frames as background images (every key required)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    share: float = Field(ge=0, lt=1)  # of each station's new images in a version, at most
    seed: int  # of the first frame when no embeddings order them (a hash of seed and id)


REVIEW_LABELS_OFF = ReviewLabels(use=False, decisions=[FrameDecision.DEFECT], second_pass=True)
NEGATIVES_OFF = Negatives(share=0.0, seed=0)


class SamplingPolicy(BaseModel):
    """Every field is required: a policy says what it does (labeling/sampling/policy.yaml);
    `review_labels` and `negatives` may be left out (off), as in policies written before them."""

    model_config = ConfigDict(extra="forbid")
    budget_per_station_day: int = Field(ge=0)
    window_days: int = Field(ge=1)
    strategies: list[PolicyLine] = Field(min_length=1)  # in priority order
    review_labels: ReviewLabels = REVIEW_LABELS_OFF
    negatives: Negatives = NEGATIVES_OFF

    @property
    def labels_from_review(self) -> list[FrameDecision]:
        """The frame decisions that make a reviewed frame labelled ([] when off)."""
        return list(self.review_labels.decisions) if self.review_labels.use else []

    @field_validator("strategies", mode="before")
    @classmethod
    def _made(cls, lines: Any) -> Any:
        if not isinstance(lines, list):
            return lines
        made = []
        for i, line in enumerate(lines):
            if isinstance(line, PolicyLine):
                made.append(line)
                continue
            if not isinstance(line, dict) or "use" not in line:
                raise ValueError(f"line {i + 1} needs `use: NAME` (and `share:`), got {line!r}")
            settings = {k: v for k, v in line.items() if k != "use"}
            kind = strategy_class(str(line["use"]))
            try:
                made.append(kind.model_validate(settings))
            except ValidationError as error:
                raise ValueError(f"{kind.name}: {validation_problems(error)}") from None
        return made

    @model_validator(mode="after")
    def _one_line_each_within_the_budget(self) -> SamplingPolicy:
        names = [s.name for s in self.strategies]
        twice = sorted({n for n in names if names.count(n) > 1})
        if twice:
            raise ValueError(f"strategy {', '.join(twice)} is listed twice; give each one line")
        total = sum(s.share for s in self.strategies)
        if total > 1 + 1e-9:
            raise ValueError(f"the shares add up to {total:.2f}; they may not exceed 1")
        return self

    @classmethod
    def load(cls, path: str | Path | None = None) -> SamplingPolicy:
        path = Path(path) if path else policy_path()
        try:
            raw = yaml.safe_load(path.read_text(encoding="utf-8"))
        except (OSError, yaml.YAMLError) as error:
            raise ConfigError(f"{path}: cannot read the sampling policy ({error})") from error
        if isinstance(raw, dict) and "shares" in raw:
            raise ConfigError(f"{path}: `shares:` is the old form of the policy; list the strategies instead "
                              f"(`strategies: - {{use: review, share: 0.2}}`), as {policy_path()} does")
        try:
            return cls.model_validate(raw or {})
        except ValidationError as error:
            raise ConfigError(f"{path}: invalid sampling policy: {validation_problems(error)}; "
                              f"see {policy_path()} for every key") from error
