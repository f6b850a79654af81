"""The loop bench's arms: how each chooses the frames to label on a turn.

    from bench.loop.arms import Arm, Served, choose, increments
    increments([25, 50, 100])                       # [25, 25, 50]: what each turn adds
    choose(Arm.RANDOM, served, already=set(), count=25, seed=0, turn=1)

- `policy`: whatever the product ships in labeling/sampling/policy.yaml, run by
  `qc label sample --queue` with the turn's labels as its budget (`policy_text`); a new
  strategy shipped there is measured without a change here.
- `random`: frames of the pool at random.
- `flagged`: FAIL and REVIEW frames only, at random among them (what a plant labels when it
  labels what the line flagged); fewer than the budget when fewer are flagged.

Picks are cumulative: a turn never picks a frame an earlier turn of the arm picked. Random
choices depend on the seed and the turn alone, so every arm of a seed sees the same pool.
"""

from __future__ import annotations

import enum
import random
from collections.abc import Iterable
from dataclasses import dataclass

import yaml


class Arm(enum.StrEnum):
    POLICY = "policy"    # the product's policy (labeling/sampling/policy.yaml)
    RANDOM = "random"
    FLAGGED = "flagged"  # FAIL and REVIEW frames only


LABELS = {Arm.POLICY: "product's policy", Arm.RANDOM: "random", Arm.FLAGGED: "FAIL and REVIEW only"}


@dataclass(frozen=True)
class Served:
    """A pool frame as the service recorded it."""

    inspection_id: str
    verdict: str  # PASS, FAIL or REVIEW


def increments(budgets: Iterable[int]) -> list[int]:
    """Cumulative budgets (labels spent after each turn) as what each turn adds."""
    ordered = list(budgets)
    if not ordered or any(b <= 0 for b in ordered) or ordered != sorted(set(ordered)):
        raise ValueError(f"budgets {ordered}: give rising positive numbers, e.g. 25,50,100")
    return [b - a for a, b in zip([0, *ordered[:-1]], ordered, strict=True)]


def choose(arm: Arm, served: list[Served], *, already: set[str], count: int, seed: int, turn: int) -> list[str]:
    """`count` inspection ids for `arm` (random or flagged) not picked before."""
    if arm is Arm.POLICY:
        raise ValueError("the policy arm picks through `qc label sample`, not here")
    left = [s for s in served if s.inspection_id not in already
            and (arm is Arm.RANDOM or s.verdict in ("FAIL", "REVIEW"))]
    rng = random.Random(f"{seed}-{arm}-{turn}")
    return [s.inspection_id for s in rng.sample(left, min(count, len(left)))]


def policy_text(shipped: str, budget: int) -> str:
    """The shipped policy with `budget` frames per station-day: all the pool is one station's
    one day, so a turn's picks are at most its budget."""
    policy = yaml.safe_load(shipped)
    policy["budget_per_station_day"] = budget
    return yaml.safe_dump(policy, sort_keys=False)
