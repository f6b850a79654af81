"""Plant shifts: a UTC instant to (plant-local date, shift name), across midnight and the
daylight-saving changes, and each shift's span in UTC."""

from __future__ import annotations

from datetime import UTC, date, datetime, time, timedelta
from itertools import pairwise

import pytest
from pydantic import ValidationError

from inspection.analytics.shifts import (
    Shift,
    ShiftKey,
    ShiftSettings,
    first_instant,
    shift_of,
    shift_span,
    shift_spans,
)

BERLIN = ShiftSettings.equal("Europe/Berlin", first_start="06:00", names=("early", "late", "night"))


def utc(*args) -> datetime:
    return datetime(*args, tzinfo=UTC)


class TestThreeEightHourShiftsInBerlin:
    def test_the_shifts_start_at_06_14_and_22(self):
        assert [(s.name, s.start) for s in BERLIN.shifts] == [
            ("early", time(6)), ("late", time(14)), ("night", time(22))]

    def test_instants_map_to_their_shift(self):
        # Winter: Berlin is UTC+1.
        assert shift_of(utc(2026, 1, 14, 5, 0), BERLIN) == ShiftKey(date(2026, 1, 14), "early")
        assert shift_of(utc(2026, 1, 14, 12, 59), BERLIN).name == "early"  # 13:59 local
        assert shift_of(utc(2026, 1, 14, 13, 0), BERLIN) == ShiftKey(date(2026, 1, 14), "late")
        assert shift_of(utc(2026, 1, 14, 21, 0), BERLIN) == ShiftKey(date(2026, 1, 14), "night")

    def test_the_night_shift_belongs_to_the_day_it_started(self):
        # 03:00 local on the 15th is the night shift that began at 22:00 on the 14th.
        assert shift_of(utc(2026, 1, 15, 2, 0), BERLIN) == ShiftKey(date(2026, 1, 14), "night")
        # ... and it ends at 06:00 local on the 15th.
        assert shift_of(utc(2026, 1, 15, 4, 59, 59), BERLIN).name == "night"
        assert shift_of(utc(2026, 1, 15, 5, 0), BERLIN) == ShiftKey(date(2026, 1, 15), "early")

    def test_the_night_the_clocks_go_forward_is_seven_hours(self):
        # 2026-03-29 02:00 CET -> 03:00 CEST.
        night = shift_span(date(2026, 3, 28), "night", BERLIN)
        assert (night.start, night.end, night.hours) == (
            utc(2026, 3, 28, 21), utc(2026, 3, 29, 4), 7.0)
        early = shift_span(date(2026, 3, 29), "early", BERLIN)
        assert early.start == night.end and early.hours == 8.0

    def test_the_night_the_clocks_go_back_is_nine_hours(self):
        # 2026-10-25 03:00 CEST -> 02:00 CET: the hour from 02:00 to 03:00 happens twice.
        night = shift_span(date(2026, 10, 24), "night", BERLIN)
        assert (night.start, night.end, night.hours) == (
            utc(2026, 10, 24, 20), utc(2026, 10, 25, 5), 9.0)
        first_0230 = utc(2026, 10, 25, 0, 30)  # 02:30 CEST
        second_0230 = utc(2026, 10, 25, 1, 30)  # 02:30 CET
        assert shift_of(first_0230, BERLIN) == shift_of(second_0230, BERLIN) == ShiftKey(
            date(2026, 10, 24), "night")

    def test_a_year_of_shifts_tiles_time_without_gaps_or_overlaps(self):
        spans = shift_spans(date(2026, 1, 1), date(2026, 12, 31), BERLIN)
        assert len(spans) == 365 * 3
        for before, after in pairwise(spans):
            assert before.end == after.start
        hours = sorted({span.hours for span in spans})
        assert hours == [7.0, 8.0, 9.0]  # only the two nights the clocks change differ

    def test_every_hour_of_a_year_falls_in_the_span_it_maps_to(self):
        instant = utc(2026, 1, 1)
        while instant < utc(2027, 1, 1):
            key = shift_of(instant, BERLIN)
            assert instant in shift_span(key.date, key.name, BERLIN)
            instant += timedelta(minutes=61)  # drifts across every minute of the hour


class TestStartsInsideTheClockChanges:
    # New York, 2026: clocks go forward on 8 March at 02:00 (to 03:00) and back on 1 November
    # at 02:00 (to 01:00).
    plant = ShiftSettings(timezone="America/New_York", shifts=(
        Shift(name="A", start=time(2, 30)), Shift(name="B", start=time(14, 30))))
    fallback = ShiftSettings(timezone="America/New_York", shifts=(
        Shift(name="A", start=time(1, 30)), Shift(name="B", start=time(13, 30))))

    def test_a_start_inside_the_spring_gap_begins_at_the_jump(self):
        # 02:30 does not exist on 8 March; the clock passes it at 02:00 EST = 07:00 UTC.
        assert first_instant(date(2026, 3, 8), time(2, 30), self.plant.zone) == utc(2026, 3, 8, 7)
        assert shift_of(utc(2026, 3, 8, 6, 59, 59), self.plant) == ShiftKey(date(2026, 3, 7), "B")
        assert shift_of(utc(2026, 3, 8, 7), self.plant) == ShiftKey(date(2026, 3, 8), "A")

    def test_a_start_inside_the_repeated_hour_begins_at_its_first_occurrence(self):
        # 01:30 happens twice on 1 November: 05:30 UTC (EDT) and 06:30 UTC (EST).
        span = shift_span(date(2026, 11, 1), "A", self.fallback)
        assert span.start == utc(2026, 11, 1, 5, 30)
        # At 01:15 EST (06:15 UTC) the clock reads earlier than 01:30 again, but shift A has
        # started and does not stop.
        assert shift_of(utc(2026, 11, 1, 6, 15), self.fallback) == ShiftKey(date(2026, 11, 1), "A")


class TestSettings:
    def test_shifts_are_kept_in_start_order(self):
        plant = ShiftSettings(timezone="UTC", shifts=(
            Shift(name="night", start=time(22)), Shift(name="day", start=time(10))))
        assert [s.name for s in plant.shifts] == ["day", "night"]
        assert shift_of(utc(2026, 5, 1, 9), plant) == ShiftKey(date(2026, 4, 30), "night")

    def test_a_single_shift_plant(self):
        plant = ShiftSettings.equal("Asia/Kolkata", first_start="07:00", names=("day",))
        assert shift_of(utc(2026, 5, 1, 1, 0), plant) == ShiftKey(date(2026, 4, 30), "day")
        assert shift_span(date(2026, 5, 1), "day", plant).hours == 24

    def test_an_unknown_time_zone_is_refused_with_examples(self):
        with pytest.raises(ValidationError, match="Europe/Berlin"):
            ShiftSettings.equal("Europe/Atlantis")

    def test_duplicate_names_or_starts_are_refused(self):
        with pytest.raises(ValidationError, match="names must differ"):
            ShiftSettings(timezone="UTC", shifts=(Shift(name="a", start=time(6)),
                                                  Shift(name="a", start=time(18))))
        with pytest.raises(ValidationError, match="same time"):
            ShiftSettings(timezone="UTC", shifts=(Shift(name="a", start=time(6)),
                                                  Shift(name="b", start=time(6))))

    def test_settings_load_from_plain_data(self):
        plant = ShiftSettings.model_validate({"timezone": "Europe/Berlin", "shifts": [
            {"name": "early", "start": "06:00"}, {"name": "late", "start": "14:00"},
            {"name": "night", "start": "22:00"}]})
        assert plant == BERLIN

    def test_naive_instants_are_refused(self):
        with pytest.raises(ValueError, match="no time zone"):
            shift_of(datetime(2026, 1, 1, 12), BERLIN)

    def test_an_unknown_shift_name_lists_the_known_ones(self):
        with pytest.raises(ValueError, match="early, late, night"):
            shift_span(date(2026, 1, 1), "graveyard", BERLIN)
