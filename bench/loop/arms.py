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
- `negatives` (not run unless named): the policy arm's very picks, each turn, pulled with the
  policy's `negatives` share at `NEGATIVES_SHARE` (QC_LABEL_POLICY), so the next model also
  sees PASS frames as background images: paired with `policy`, it measures what good frames
  as negatives do (issue 22, item 3). Needs the policy arm in the run and Label Studio (the
  negatives come with `qc loop`'s pull).
- `flip` (not run unless named): the shipped policy with a `flip_disagreement` line (after
  CALD: the frames the start model judges unlike their own mirror image) given `FLIP_LINE`'s
  share, taken from `uncertain_diverse`; set against `policy`, it measures whether the mirror
  test earns a place in the shipped policy.

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
    NEGATIVES = "negatives"  # the policy's picks, pulled with good frames as background images
    FLIP = "flip"  # the policy with flip_disagreement in it (after CALD)


LABELS = {Arm.POLICY: "product's policy", Arm.RANDOM: "random", Arm.FLAGGED: "FAIL and REVIEW only",
          Arm.NEGATIVES: "policy + good frames as negatives", Arm.FLIP: "policy + mirror disagreement"}
DEFAULT_ARMS = (Arm.POLICY, Arm.RANDOM, Arm.FLAGGED)
NEGATIVES_SHARE = 0.1  # of each version's new images, as policy-cold-start.yaml suggests
# The flip arm's line: placed just before uncertain_diverse, whose share it takes. 0.1 of
# disagreement: a box at 0.5 that moves to IoU 0.8 in the mirror, or one of 0.1 on one side only.
FLIP_LINE = {"use": "flip_disagreement", "share": 0.15, "min_disagreement": 0.1}


def check_arms(arms: Iterable[Arm], *, oracle: str) -> tuple[Arm, ...]:
    """The arms in run order (the policy before the arm that repeats its picks), or ValueError."""
    chosen = tuple(a for a in Arm if a in set(arms))
    if Arm.NEGATIVES in chosen and Arm.POLICY not in chosen:
        raise ValueError("the negatives arm repeats the policy arm's picks: run it with the policy arm")
    if Arm.NEGATIVES in chosen and oracle == "direct":
        raise ValueError("the negatives arm needs Label Studio (--oracle label-studio): the good frames come "
                         "with qc loop's pull, which --oracle direct does not run")
    return chosen


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
    if arm in (Arm.POLICY, Arm.NEGATIVES, Arm.FLIP):
        raise ValueError(f"the {arm} arm picks through `qc label sample`, not here")
    left = [s for s in served if s.inspection_id not in already
            and (arm is Arm.RANDOM or s.verdict in ("FAIL", "REVIEW"))]
    rng = random.Random(f"{seed}-{arm}-{turn}")
    return [s.inspection_id for s in rng.sample(left, min(count, len(left)))]


def policy_text(shipped: str, budget: int, *, negatives: float | None = None, flip: bool = False) -> str:
    """The shipped policy with `budget` frames per station-day (all the pool is one station's
    one day, so a turn's picks are at most its budget), with `negatives` as its negatives
    share when given, and with `FLIP_LINE` before uncertain_diverse (taking its share) when
    `flip`."""
    policy = yaml.safe_load(shipped)
    policy["budget_per_station_day"] = budget
    if negatives is not None:
        policy["negatives"] = {**(policy.get("negatives") or {"seed": 0}), "share": negatives}
    if flip:
        lines = policy["strategies"]
        where = next((i for i, line in enumerate(lines) if line["use"] == "uncertain_diverse"), None)
        if where is None or lines[where]["share"] < FLIP_LINE["share"]:
            raise ValueError(f"the flip arm takes {FLIP_LINE['share']} of uncertain_diverse's share, and the shipped "
                             "policy has no such line or less: change FLIP_LINE in bench/loop/arms.py to take it "
                             "from another line")
        lines[where] = {**lines[where], "share": round(lines[where]["share"] - FLIP_LINE["share"], 6)}
        lines.insert(where, dict(FLIP_LINE))
    return yaml.safe_dump(policy, sort_keys=False)
