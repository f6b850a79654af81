"""The loop bench's pure parts (bench/loop/), as specifications: the pools its scenarios
draw, paired seeds, the arms' picks, the area under a curve and the section it writes. On
synthetic file names: no DeepPCB, no training, no service; well under a second."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest

from bench.loop.arms import Arm, Served, choose, increments, policy_text
from bench.loop.curve import area, labels_per_point, mean_curve
from bench.loop.pool import Scenario, draw

REPO = Path(__file__).resolve().parents[1]
IMAGES = [Path(f"/data/images/train/{board:05d}{n:03d}.jpg") for board in (41, 13000, 20085) for n in range(100)]


def template(image: Path) -> Path:
    return Path("/data/templates/train") / image.name


def drawn(scenario: Scenario, seed: int = 0, **sizes):
    return draw(scenario, seed=seed, images=IMAGES, template_of=template, **({"start": 50, "pool": 200} | sizes))


# -- the pools -------------------------------------------------------------------------------


def test_a_line_is_mostly_good_parts_with_defective_boards_at_the_plants_rate():
    line = drawn(Scenario.LINE, pool=200, defect_rate=0.05)
    assert len(line.pool) == 200
    assert line.defect_rate == pytest.approx(0.05)
    assert sum(not f.good for f in line.pool) == 10


def test_a_good_part_is_a_jittered_template_and_its_golden_part_is_that_template():
    good = [f for f in drawn(Scenario.LINE).pool if f.good]
    assert all(f.image is None and f.jitter_seed is not None for f in good)
    assert all(f.template.parent == Path("/data/templates/train") for f in good)
    assert len({f.name for f in good}) == len(good)  # one record per shot, even of one template


def test_the_defective_pool_is_every_frame_a_defective_board_never_in_the_start_set():
    pool = drawn(Scenario.DEFECTIVE)
    assert pool.defect_rate == 1.0
    assert not {f.image for f in pool.pool} & set(pool.start)
    assert all(f.template == template(f.image) for f in pool.pool if f.image)


def test_defective_boards_of_a_line_are_never_in_the_start_set():
    line = drawn(Scenario.LINE, defect_rate=0.2)
    assert not {f.image for f in line.pool if f.image} & set(line.start)


def test_too_few_images_for_the_sizes_is_refused_with_the_numbers():
    with pytest.raises(ValueError, match="300 labelled images cannot give a start set of 200 and a pool of 200"):
        drawn(Scenario.DEFECTIVE, start=200, pool=200)


# -- paired seeds ----------------------------------------------------------------------------


def test_a_seed_draws_the_same_start_set_and_pool_every_time():
    for scenario in Scenario:
        assert drawn(scenario, seed=3) == drawn(scenario, seed=3)


def test_both_scenarios_of_a_seed_start_from_the_same_labelled_boards():
    assert drawn(Scenario.LINE, seed=4).start == drawn(Scenario.DEFECTIVE, seed=4).start


def test_other_seeds_draw_other_start_sets_and_pools():
    assert drawn(Scenario.LINE, seed=1).start != drawn(Scenario.LINE, seed=2).start
    assert drawn(Scenario.LINE, seed=1).pool != drawn(Scenario.LINE, seed=2).pool


def test_every_arm_of_a_seed_picks_from_one_pool_the_same_way_every_run():
    served = [Served(f"id{i}", ("PASS", "REVIEW", "FAIL")[i % 3]) for i in range(90)]
    for arm in (Arm.RANDOM, Arm.FLAGGED):
        first = choose(arm, served, already=set(), count=10, seed=5, turn=1)
        assert first == choose(arm, served, already=set(), count=10, seed=5, turn=1)
        assert first != choose(arm, served, already=set(), count=10, seed=6, turn=1)


# -- the arms --------------------------------------------------------------------------------


def test_budgets_are_cumulative_and_each_turn_adds_the_difference():
    assert increments([25, 50, 100]) == [25, 25, 50]
    with pytest.raises(ValueError, match="rising positive"):
        increments([50, 25])


def test_later_turns_never_pick_a_frame_again():
    served = [Served(f"id{i}", "PASS") for i in range(40)]
    first = choose(Arm.RANDOM, served, already=set(), count=25, seed=0, turn=1)
    second = choose(Arm.RANDOM, served, already=set(first), count=25, seed=0, turn=2)
    assert len(second) == 15 and not set(first) & set(second)


def test_the_flagged_arm_labels_fail_and_review_frames_only_and_spends_less_when_few_are_flagged():
    served = [Served("a", "PASS"), Served("b", "FAIL"), Served("c", "REVIEW"), Served("d", "PASS")]
    assert sorted(choose(Arm.FLAGGED, served, already=set(), count=3, seed=0, turn=1)) == ["b", "c"]


def test_the_policy_arm_is_the_shipped_policy_with_the_turns_budget():
    shipped = (REPO / "labeling" / "sampling" / "policy.yaml").read_text()
    import yaml

    policy = yaml.safe_load(policy_text(shipped, 25))
    assert policy["budget_per_station_day"] == 25
    assert policy["strategies"] == yaml.safe_load(shipped)["strategies"]
    with pytest.raises(ValueError, match="qc label sample"):
        choose(Arm.POLICY, [], already=set(), count=1, seed=0, turn=1)


# -- curves ----------------------------------------------------------------------------------


def test_the_area_is_the_curves_mean_score_over_the_labels():
    assert area([(0, 0.30), (25, 0.40), (50, 0.45), (100, 0.50)]) == pytest.approx(
        (25 * 0.35 + 25 * 0.425 + 50 * 0.475) / 100)
    assert area([(100, 0.5), (0, 0.5)]) == pytest.approx(0.5)  # order does not matter
    assert area([(0, 0.2)]) == 0.2


def test_an_arm_that_ran_out_of_frames_keeps_its_score_to_the_last_budget():
    assert area([(0, 0.2), (10, 0.4)], until=100) == pytest.approx((10 * 0.3 + 90 * 0.4) / 100)


def test_labels_per_point_of_map50_gained():
    assert labels_per_point(spent=50, score=0.45, start=0.30) == pytest.approx(50 / 15)
    assert math.isinf(labels_per_point(spent=50, score=0.29, start=0.30))


def test_the_mean_curve_averages_each_budget_over_the_seeds():
    mean = mean_curve([[(0, 0.2), (25, 0.4)], [(0, 0.4), (24, 0.6)]])
    assert [x for x, _ in mean] == [0, 24.5]
    assert [y for _, y in mean] == pytest.approx([0.3, 0.5])


# -- the section ---------------------------------------------------------------------------


def result(scenario: str, seed: int, gain: float) -> dict:
    """A seed's result as seed.py writes it: the policy `gain` mAP50 above random."""
    turns = []
    for arm, extra in (("policy", gain), ("random", 0.0), ("flagged", -0.01)):
        for budget, score in ((25, 0.40), (50, 0.45), (100, 0.50)):
            turns.append({"arm": arm, "budget": budget, "spent": budget, "gate": "waiting_approval",
                          "scores": {"map50": score + extra, "map50_95": 0.2, "fscore": score + extra},
                          "seconds": {"pick and answer": 10.0, "qc loop": 400.0, "scoring": 30.0},
                          "reasons": {"review": 5} if arm == "policy" else {}})
    return {"scenario": scenario, "seed": seed, "oracle": "label-studio",
            "sizes": {"start": 200, "pool": 600, "budgets": [25, 50, 100], "start_epochs": 25,
                      "fine_tune_epochs": 10},
            "pool": {"frames": 600, "defective": 30, "verdicts": {"PASS": 500, "REVIEW": 60, "FAIL": 40}},
            "eval": {"data": "/d/boards.yaml", "split": "val"}, "start": {"map50": 0.3, "map50_95": 0.1, "fscore": 0.3},
            "turns": turns, "timings": {"start model training": 900.0, "serving the pool": 60.0}}


def test_the_section_reports_each_budget_the_paired_deltas_the_goals_and_the_plot(tmp_path):
    from bench.loop.summary import section

    results = [result("line", s, 0.06 if s < 4 else 0.0) for s in range(5)]
    results += [result("defective", s, 0.01) for s in range(5)]
    body = section(json.loads(json.dumps(results)), images=tmp_path)
    assert "policy beats random by ≥ 0.05 mAP50 in 4 of 5 seeds (goal: 4 of 5): **met**" in body
    assert "+0.060, +0.060, +0.060, +0.060, +0.000" in body
    assert "the slowest turn at budget 50 (pick, answer, pull, train, gate) took 6.8 min" in body
    assert (tmp_path / "loop-line.png").stat().st_size > 0 and (tmp_path / "loop-defective.png").is_file()


def test_with_fewer_than_five_seeds_a_goal_is_open_with_the_count_until_it_can_no_longer_be_met(tmp_path):
    from bench.loop.summary import section

    two = section([result("line", 0, 0.06), result("line", 1, 0.06), result("defective", 0, 0.01)], images=tmp_path)
    assert "in 2 of 2 seeds (goal: 4 of 5): **open: 2 of 5 seeds run**" in two
    assert "(goal: at least level and steadier): **open: 1 of 5 seeds run**" in two
    lost = section([result("line", s, 0.0) for s in range(2)], images=tmp_path)
    assert "in 0 of 2 seeds (goal: 4 of 5): **not met**" in lost  # 3 seeds left cannot make 4


def test_the_negatives_arm_repeats_the_policys_picks_with_a_negatives_share_and_needs_the_policy_and_label_studio():
    import yaml

    from bench.loop.arms import NEGATIVES_SHARE, check_arms

    shipped = (REPO / "labeling" / "sampling" / "policy.yaml").read_text()
    assert yaml.safe_load(policy_text(shipped, 25, negatives=NEGATIVES_SHARE))["negatives"]["share"] == 0.1
    assert check_arms([Arm.NEGATIVES, Arm.RANDOM, Arm.POLICY], oracle="label-studio") == (
        Arm.POLICY, Arm.RANDOM, Arm.NEGATIVES)  # the policy runs first: the negatives arm repeats its picks
    with pytest.raises(ValueError, match="with the policy arm"):
        check_arms([Arm.NEGATIVES], oracle="label-studio")
    with pytest.raises(ValueError, match="needs Label Studio"):
        check_arms([Arm.POLICY, Arm.NEGATIVES], oracle="direct")


def test_the_section_sets_the_negatives_arm_against_the_policys_same_picks(tmp_path):
    from bench.loop.summary import section

    seeds = []
    for s in range(2):
        one = result("line", s, 0.06)
        one["turns"] += [{**t, "arm": "negatives", "scores": {**t["scores"], "map50": t["scores"]["map50"] + 0.02}}
                         for t in one["turns"] if t["arm"] == "policy"]
        seeds.append(one)
    body = section(seeds, images=tmp_path)
    assert "Good frames as negatives" in body and "| 50 | +0.020, +0.020 | +0.020 |" in body


def test_a_turn_with_nothing_new_to_label_shows_no_time_of_its_own(tmp_path):
    from bench.loop.summary import section

    one = result("line", 0, 0.06)
    for turn in one["turns"]:
        if turn["arm"] == "flagged" and turn["budget"] == 100:
            turn.update(gate="nothing new to label", seconds={"pick and answer": 0.1, "qc loop": 0.0})
    body = section([one], images=tmp_path)
    assert "| 100 | FAIL and REVIEW only | - | - | no turn: nothing new to label |" in body


def test_the_flip_arm_is_the_shipped_policy_with_a_flip_disagreement_line_taking_uncertain_diverses_share():
    import yaml

    from bench.loop.arms import FLIP_LINE
    from labeling.sampling.policy import SamplingPolicy

    shipped = yaml.safe_load((REPO / "labeling" / "sampling" / "policy.yaml").read_text())
    flipped = yaml.safe_load(policy_text(yaml.safe_dump(shipped), 25, flip=True))
    uses = [line["use"] for line in flipped["strategies"]]
    where = uses.index("flip_disagreement")
    assert uses[where + 1] == "uncertain_diverse" and flipped["strategies"][where] == FLIP_LINE
    assert sum(line["share"] for line in flipped["strategies"]) == pytest.approx(
        sum(line["share"] for line in shipped["strategies"]))  # a share moved, none added
    SamplingPolicy.model_validate(flipped)  # a policy the product accepts
    without = {**shipped, "strategies": [line for line in shipped["strategies"] if line["use"] != "uncertain_diverse"]}
    with pytest.raises(ValueError, match="FLIP_LINE"):
        policy_text(yaml.safe_dump(without), 25, flip=True)
    with pytest.raises(ValueError, match="qc label sample"):
        choose(Arm.FLIP, [], already=set(), count=1, seed=0, turn=1)


def test_the_section_sets_the_flip_arm_against_the_shipped_policy(tmp_path):
    from bench.loop.summary import section

    one = result("defective", 0, 0.01)
    one["turns"] += [{**t, "arm": "flip", "scores": {**t["scores"], "map50": t["scores"]["map50"] - 0.03}}
                     for t in one["turns"] if t["arm"] == "policy"]
    body = section([one], images=tmp_path)
    assert "Mirror disagreement (after CALD)" in body and "| 25 | -0.030 | -0.030 |" in body
    assert "policy + mirror disagreement" in body  # its own curve and area


def test_the_line_says_how_many_defective_frames_each_arm_labelled(tmp_path):
    from bench.loop.summary import section

    seeds = [result("line", s, 0.02) for s in range(2)]
    for one in seeds:
        for turn in one["turns"]:
            turn["defective"] = {"policy": 20, "random": 1, "flagged": 22}[turn["arm"]] + turn["budget"] // 50
    body = section(seeds, images=tmp_path)
    assert "Defective frames among the labels spent (of 30 in each seed's pool; mean, then per seed):" in body
    assert "| 50 | 21.0 (21, 21) | 2.0 (2, 2) | 23.0 (23, 23) |" in body
    # Results written before the count (no "defective") and the all-defective pool show no such table.
    assert "Defective frames among" not in section([result("line", 0, 0.02)], images=tmp_path)
