"""SPC for defect rates: p- and u-charts against textbook answers, the zone and trend rules,
EWMA and CUSUM. Synthetic or published data only; no database."""

from __future__ import annotations

import json
import math
from datetime import UTC, datetime, timedelta

import numpy as np
import pytest

from inspection.analytics.spc import (
    Alarm,
    ChartKind,
    CusumSettings,
    EwmaSettings,
    Limits,
    Rule,
    Side,
    baseline_limits,
    cusum,
    cusum_allowance,
    ewma,
    p_chart,
    rule_hits,
    u_chart,
    western_electric,
)
from inspection.errors import ConfigError

# Montgomery, Introduction to Statistical Quality Control, Example 7.1 (Table 7.1): frozen
# orange juice concentrate cans, 30 samples of n = 50 cans, number of nonconforming cans.
# Published answers: p-bar = 0.2313, UCL = 0.4102, LCL = 0.0524; samples 15 and 23 plot above
# the UCL (a new batch of cardboard; an inexperienced operator). With those two removed, the
# revised limits are p-bar = 0.2150, UCL = 0.3893, LCL = 0.0407.
# The per-sample counts below are checked here against what is certain about them: they sum to
# the published 347 (p-bar = 347 / 1500), and exactly samples 15 and 23 exceed the UCL. The limits
# themselves rest only on p-bar and n, which are published.
ORANGE_JUICE = [12, 15, 8, 10, 4, 7, 16, 9, 14, 10, 5, 6, 17, 12, 22,
                8, 10, 5, 13, 11, 20, 18, 24, 15, 9, 12, 7, 13, 9, 6]


class TestMontgomeryExample71:
    def test_the_data_is_the_books(self):
        assert len(ORANGE_JUICE) == 30
        assert sum(ORANGE_JUICE) == 347

    def test_limits_match_the_published_ones(self):
        limits = baseline_limits(ChartKind.P, ORANGE_JUICE, 50)
        assert limits.centre == pytest.approx(0.2313, abs=5e-5)
        assert float(limits.upper(50)) == pytest.approx(0.4102, abs=5e-5)
        assert float(limits.lower(50)) == pytest.approx(0.0524, abs=5e-5)
        assert (limits.baseline_subgroups, limits.baseline_units, limits.baseline_count) == (
            30, 1500, 347)

    def test_samples_15_and_23_plot_above_the_upper_limit_and_nothing_else_fires_rule_1(self):
        limits = baseline_limits(ChartKind.P, ORANGE_JUICE, 50)
        chart = p_chart(limits, ORANGE_JUICE, 50, rules=[Rule.BEYOND_3_SIGMA])
        # The book numbers samples from 1; alarms index points from 0.
        assert [(a.index + 1, a.side) for a in chart.alarms] == [(15, Side.ABOVE), (23, Side.ABOVE)]
        assert "0.440 above the upper control limit 0.410" in chart.alarms[0].message

    def test_revised_limits_leave_out_the_explained_samples(self):
        revised = baseline_limits(ChartKind.P, ORANGE_JUICE, 50, exclude=[14, 22])
        assert revised.centre == pytest.approx(0.2150, abs=5e-5)
        assert float(revised.upper(50)) == pytest.approx(0.3893, abs=5e-5)
        assert float(revised.lower(50)) == pytest.approx(0.0407, abs=5e-5)
        # Hand-derived from the data: against the revised limits sample 21 (20/50 = 0.40) is
        # above the UCL too, besides the two excluded samples.
        chart = p_chart(revised, ORANGE_JUICE, 50, rules=[Rule.BEYOND_3_SIGMA])
        assert [a.index + 1 for a in chart.alarms] == [15, 21, 23]


# Montgomery, Introduction to Statistical Quality Control, the c-chart example on nonconformities
# in printed circuit boards (Example 7.3 in the 6th edition): 26 successive samples of 100
# boards, the number of nonconformities in each. Published answers: c-bar = 516 / 26 = 19.85,
# UCL = 33.22, LCL = 6.48; sample 6 plots below the LCL (a new inspector) and sample 20 above
# the UCL (a problem in the wave-soldering machine). With both removed the revised limits are
# c-bar = 472 / 24 = 19.67, UCL = 32.97, LCL = 6.36. As a u-chart the unit is one board: u-bar =
# 0.1985 nonconformities per board, n = 100 per sample, the same limits divided by 100.
# As with Example 7.1 above, the counts below are checked against what is certain about them:
# their published total, and which samples the published limits put outside.
CIRCUIT_BOARDS = [21, 24, 16, 12, 15, 5, 28, 20, 31, 25, 20, 24, 16,
                  19, 10, 17, 13, 22, 18, 39, 30, 24, 16, 19, 17, 15]


class TestMontgomeryCircuitBoards:
    def test_the_data_is_the_books(self):
        assert len(CIRCUIT_BOARDS) == 26
        assert sum(CIRCUIT_BOARDS) == 516
        assert sum(CIRCUIT_BOARDS) - CIRCUIT_BOARDS[5] - CIRCUIT_BOARDS[19] == 472

    def test_u_chart_limits_per_board_match_the_published_ones(self):
        limits = baseline_limits(ChartKind.U, CIRCUIT_BOARDS, 100)
        assert limits.centre == pytest.approx(0.1985, abs=5e-5)
        # The book rounds c-bar to 19.85 before computing its limits: agreement to 0.01 nonconformity.
        assert 100 * float(limits.upper(100)) == pytest.approx(33.22, abs=0.01)
        assert 100 * float(limits.lower(100)) == pytest.approx(6.48, abs=0.01)
        assert (limits.baseline_subgroups, limits.baseline_units, limits.baseline_count) == (26, 2600, 516)

    def test_one_sample_of_100_boards_as_the_unit_gives_the_c_chart(self):
        limits = baseline_limits(ChartKind.U, CIRCUIT_BOARDS, 1)
        assert limits.centre == pytest.approx(19.85, abs=5e-3)
        assert float(limits.upper(1)) == pytest.approx(33.22, abs=0.01)
        assert float(limits.lower(1)) == pytest.approx(6.48, abs=0.01)

    def test_samples_6_and_20_plot_outside_and_nothing_else_fires_rule_1(self):
        limits = baseline_limits(ChartKind.U, CIRCUIT_BOARDS, 100)
        chart = u_chart(limits, CIRCUIT_BOARDS, 100, rules=[Rule.BEYOND_3_SIGMA])
        assert [(a.index + 1, a.side) for a in chart.alarms] == [(6, Side.BELOW), (20, Side.ABOVE)]
        assert "defects per part 0.390 above the upper control limit 0.332" in chart.alarms[1].message

    def test_revised_limits_leave_out_the_explained_samples(self):
        revised = baseline_limits(ChartKind.U, CIRCUIT_BOARDS, 100, exclude=[5, 19])
        assert 100 * revised.centre == pytest.approx(19.67, abs=5e-3)
        assert 100 * float(revised.upper(100)) == pytest.approx(32.97, abs=0.01)
        assert 100 * float(revised.lower(100)) == pytest.approx(6.36, abs=0.01)
        chart = u_chart(revised, CIRCUIT_BOARDS, 100, rules=[Rule.BEYOND_3_SIGMA])
        assert [a.index + 1 for a in chart.alarms] == [6, 20]  # and no other sample

    def test_the_western_electric_rules_fire_on_a_run_of_high_counts(self):
        limits = baseline_limits(ChartKind.U, CIRCUIT_BOARDS, 100, exclude=[5, 19])
        # Eight samples in a row each a little above u-bar (22 per 100 boards, +0.5 sigma):
        # only the run rule sees it, at the eighth.
        chart = u_chart(limits, [22] * 8, 100)
        assert [(a.rule, a.index, a.side) for a in chart.alarms] == [(Rule.EIGHT_ON_ONE_SIDE, 7, Side.ABOVE)]


class TestUChart:
    def test_limits_from_u_bar_and_n_match_montgomerys_personal_computer_example(self):
        # Montgomery, ISQC, u chart section (final inspection of personal computers, 20 samples
        # of n = 5 units): u-bar = 1.93, UCL = 3.79, LCL = 0.07. Only u-bar and n are used,
        # so this checks the formula u-bar +- 3 sqrt(u-bar / n), not recalled sample data.
        limits = Limits(kind=ChartKind.U, centre=1.93)
        assert float(limits.upper(5)) == pytest.approx(3.79, abs=5e-3)
        assert float(limits.lower(5)) == pytest.approx(0.07, abs=5e-3)

    def test_variable_sizes_give_each_point_its_own_limits(self):
        # Hand-computed: 40 defects on 20 parts -> u-bar = 2; for n = 4 sigma = sqrt(2/4);
        # for n = 16 sigma = sqrt(2/16).
        limits = baseline_limits(ChartKind.U, counts=[10, 30], sizes=[5, 15])
        assert limits.centre == 2.0
        upper = limits.upper([4, 16])
        assert upper == pytest.approx([2 + 3 * math.sqrt(0.5), 2 + 3 * math.sqrt(0.125)])
        assert limits.lower(1) == 0.0  # 2 - 3 sqrt(2) < 0: clipped
        # The same rate, 3.5 defects per part, is within limits on 4 parts and beyond them on 16.
        chart = u_chart(limits, counts=[14, 56], sizes=[4, 16], rules=[Rule.BEYOND_3_SIGMA])
        assert [a.index for a in chart.alarms] == [1]
        assert chart.z == pytest.approx([1.5 / math.sqrt(0.5), 1.5 / math.sqrt(0.125)])

    def test_u_chart_counts_may_exceed_parts(self):
        limits = Limits(kind=ChartKind.U, centre=1.0)
        assert u_chart(limits, counts=[7], sizes=[2]).values.tolist() == [3.5]


class TestPChartVariableSizes:
    def test_per_point_limits_follow_n(self):
        limits = Limits(kind=ChartKind.P, centre=0.02)
        for n in (20, 50, 500):
            assert float(limits.upper(n)) == pytest.approx(0.02 + 3 * math.sqrt(0.02 * 0.98 / n))
        assert float(limits.lower(50)) == 0.0  # 0.02 - 0.059 < 0: clipped at 0

    def test_the_same_fraction_alarms_on_a_large_subgroup_only(self):
        limits = Limits(kind=ChartKind.P, centre=0.02)
        chart = p_chart(limits, counts=[3, 30], sizes=[50, 500], rules=[Rule.BEYOND_3_SIGMA])
        assert chart.values.tolist() == [0.06, 0.06]
        assert [a.index for a in chart.alarms] == [1]

    def test_a_count_above_its_subgroup_is_refused(self):
        with pytest.raises(ValueError, match="u-chart"):
            p_chart(Limits(kind=ChartKind.P, centre=0.1), counts=[6], sizes=[5])

    def test_a_baseline_without_any_defect_cannot_set_limits(self):
        with pytest.raises(ConfigError, match="longer baseline"):
            baseline_limits(ChartKind.P, counts=[0, 0, 0], sizes=[50, 50, 50])


class TestLimitsAreAFrozenSerialisableValue:
    def test_round_trip_through_json(self):
        limits = baseline_limits(ChartKind.P, ORANGE_JUICE, 50)
        again = Limits.from_dict(json.loads(json.dumps(limits.to_dict())))
        assert again == limits

    def test_limits_cannot_be_changed(self):
        limits = Limits(kind=ChartKind.P, centre=0.02)
        with pytest.raises(AttributeError):
            limits.centre = 0.5  # type: ignore[misc]

    def test_unknown_stored_keys_are_refused(self):
        with pytest.raises(ConfigError, match="centre_line"):
            Limits.from_dict({"kind": "p", "centre": 0.1, "centre_line": 0.1})


def _rules(z, rule):
    return [(a.index, a.side) for a in western_electric(np.array(z, float), rules=[rule])]


class TestWesternElectricRules:
    def test_rule_1_one_point_beyond_3_sigma_on_either_side(self):
        assert _rules([0, 3.1, 0, -3.2, 3.0], Rule.BEYOND_3_SIGMA) == [(1, Side.ABOVE), (3, Side.BELOW)]

    def test_rule_2_two_of_three_beyond_2_sigma_on_the_same_side(self):
        assert _rules([2.5, 0, 2.1, 0, 0], Rule.TWO_OF_THREE_BEYOND_2_SIGMA) == [(2, Side.ABOVE)]
        assert _rules([2.5, -2.5, 0.0, 0, 0], Rule.TWO_OF_THREE_BEYOND_2_SIGMA) == []  # opposite sides
        assert _rules([2.5, 0, 0, 2.5, 0], Rule.TWO_OF_THREE_BEYOND_2_SIGMA) == []  # not within three
        assert _rules([-2.2, -2.4], Rule.TWO_OF_THREE_BEYOND_2_SIGMA) == [(1, Side.BELOW)]

    def test_rule_2_fires_on_the_point_that_completes_the_pattern_only(self):
        # Points 0 and 1 are beyond; point 2 is not: the alarm is at point 1, not repeated at 2.
        assert _rules([2.5, 2.5, 0.0], Rule.TWO_OF_THREE_BEYOND_2_SIGMA) == [(1, Side.ABOVE)]

    def test_rule_3_four_of_five_beyond_1_sigma_on_the_same_side(self):
        assert _rules([1.5, 1.2, 0.5, 1.1, 1.3], Rule.FOUR_OF_FIVE_BEYOND_1_SIGMA) == [(4, Side.ABOVE)]
        assert _rules([1.5, 1.2, 0.5, 0.5, 1.3], Rule.FOUR_OF_FIVE_BEYOND_1_SIGMA) == []

    def test_rule_4_eight_in_a_row_on_one_side(self):
        assert _rules([0.1] * 7, Rule.EIGHT_ON_ONE_SIDE) == []
        assert _rules([0.1] * 8, Rule.EIGHT_ON_ONE_SIDE) == [(7, Side.ABOVE)]
        assert _rules([-0.1] * 8 + [0.0], Rule.EIGHT_ON_ONE_SIDE) == [(7, Side.BELOW)]

    def test_trend_six_points_steadily_increasing_or_decreasing(self):
        assert _rules([0, 0.1, 0.2, 0.3, 0.4, 0.5], Rule.TREND) == [(5, Side.ABOVE)]
        assert _rules([0, 0.1, 0.2, 0.3, 0.4], Rule.TREND) == []  # five points are not enough
        assert _rules([0, 0.1, 0.2, 0.2, 0.3, 0.4], Rule.TREND) == []  # a tie breaks the run
        assert _rules([1, 0.5, 0, -0.5, -1, -1.5], Rule.TREND) == [(5, Side.BELOW)]

    def test_alarms_are_typed_and_stamped_with_times(self):
        start = datetime(2026, 11, 25, 6, tzinfo=UTC)
        times = [start + timedelta(hours=i) for i in range(3)]
        (alarm,) = western_electric(np.array([0, 0, 4.0]), times=times)
        assert isinstance(alarm, Alarm)
        assert (alarm.rule, alarm.index, alarm.side, alarm.time) == (
            Rule.BEYOND_3_SIGMA, 2, Side.ABOVE, times[2])
        assert "4.0σ above" in alarm.message

    def test_rule_hits_run_on_many_series_at_once(self):
        z = np.zeros((3, 10))
        z[1, 4] = 3.5
        hits = rule_hits(z, [Rule.BEYOND_3_SIGMA])
        assert np.argwhere(hits[(Rule.BEYOND_3_SIGMA, Side.ABOVE)]).tolist() == [[1, 4]]

    def test_a_stable_line_rarely_fires_rule_1(self):
        # 2% defective in subgroups of 200: a point beyond 3 sigma is rare (binomial tail).
        rng = np.random.default_rng(7)
        limits = Limits(kind=ChartKind.P, centre=0.02)
        counts = rng.binomial(200, 0.02, size=5000)
        chart = p_chart(limits, counts, 200, rules=[Rule.BEYOND_3_SIGMA])
        assert len(chart.alarms) / 5000 < 0.01


class TestEwma:
    def test_limits_with_a_constant_size_follow_the_closed_form(self):
        limits = Limits(kind=ChartKind.P, centre=0.02)
        settings = EwmaSettings(lam=0.2, width=3.0)
        result = ewma(limits, counts=np.ones(30), sizes=50, settings=settings)
        t = np.arange(1, 31)
        sigma = math.sqrt(0.02 * 0.98 / 50)
        expected = 0.02 + 3 * sigma * np.sqrt(0.2 / 1.8 * (1 - 0.8 ** (2 * t)))
        assert result.upper == pytest.approx(expected)

    def test_variable_sizes_use_the_exact_recursion(self):
        limits = Limits(kind=ChartKind.U, centre=1.0)
        settings = EwmaSettings(lam=0.5, width=1.5)
        result = ewma(limits, counts=[2, 1], sizes=[2, 8], settings=settings)
        # Hand: E1 = 0.5*1 + 0.5*1 = 1, V1 = 0.25*(1/2); E2 = 0.5*(1/8) + 0.5*1, V2 = 0.25/8 + 0.25*V1
        assert result.statistic == pytest.approx([1.0, 0.5625])
        assert result.upper == pytest.approx([1 + 1.5 * math.sqrt(0.125),
                                              1 + 1.5 * math.sqrt(0.25 / 8 + 0.25 * 0.125)])
        # V2 = 0.0625: the lower limit is 1 - 1.5 * 0.25 = 0.625, above E2 = 0.5625.
        assert [(a.index, a.side) for a in result.alarms] == [(1, Side.BELOW)]

    def test_a_small_sustained_shift_is_caught_where_rule_1_is_silent(self):
        limits = Limits(kind=ChartKind.P, centre=0.02)
        counts = np.array([1] * 20 + [2] * 20)  # 2% then 4%, never beyond 3 sigma at n = 50
        assert p_chart(limits, counts, 50, rules=[Rule.BEYOND_3_SIGMA]).alarms == []
        result = ewma(limits, counts, 50, EwmaSettings(lam=0.1, width=2.7))
        first = result.alarms[0]
        assert first.rule is Rule.EWMA and first.side is Side.ABOVE and first.index >= 20

    def test_settings_are_checked(self):
        with pytest.raises(ConfigError):
            EwmaSettings(lam=0, width=3)


class TestCusum:
    def test_allowance_is_the_binomial_sprt_slope(self):
        limits = Limits(kind=ChartKind.P, centre=0.02)
        k = cusum_allowance(limits, 0.04)
        assert k == pytest.approx(math.log(0.98 / 0.96) / math.log(0.04 * 0.98 / (0.02 * 0.96)))
        assert 0.02 < k < 0.04  # between the two rates, as a threshold must be

    def test_poisson_allowance_for_u_charts(self):
        limits = Limits(kind=ChartKind.U, centre=1.0)
        assert cusum_allowance(limits, 2.0) == pytest.approx(1 / math.log(2))

    def test_hand_traced_upper_sum(self):
        limits = Limits(kind=ChartKind.U, centre=1.0)
        settings = CusumSettings(shift=2.0, h=2.0)
        k = 1 / math.log(2)  # ~1.4427 defects per part
        result = cusum(limits, counts=[0, 3, 3, 1], sizes=1, settings=settings)
        s1 = 0.0
        s2 = 3 - k
        s3 = s2 + 3 - k
        s4 = max(0.0, s3 + 1 - k)
        assert result.upper_sum == pytest.approx([s1, s2, s3, s4])
        # Crossed h = 2 at point 2 and still above at 3: the sum is not reset by an alarm.
        assert [a.index for a in result.alarms if a.side is Side.ABOVE] == [2, 3]
        assert "defects more than the baseline allows" in result.alarms[0].message

    def test_part_by_part_bernoulli_cusum(self):
        limits = Limits(kind=ChartKind.P, centre=0.02)
        parts = np.zeros(400, int)
        parts[200::20] = 1  # 5% defective from part 200
        result = cusum(limits, parts, 1, CusumSettings(shift=2.0, h=3.0))
        assert result.above[:200].sum() == 0
        assert result.above[200:].any()

    def test_settings_are_checked(self):
        with pytest.raises(ConfigError, match="ratio"):
            CusumSettings(shift=1.0, h=3)
