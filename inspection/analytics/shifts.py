"""Plant shifts: which (plant-local date, shift) a UTC instant belongs to, and each shift's
span in UTC, across daylight-saving changes and midnight.

Example::

    >>> from datetime import UTC, date, datetime
    >>> from inspection.analytics.shifts import ShiftSettings, shift_of, shift_span
    >>> plant = ShiftSettings.equal("Europe/Berlin", first_start="06:00",
    ...                             names=("early", "late", "night"))
    >>> shift_of(datetime(2026, 3, 11, 3, 0, tzinfo=UTC), plant)      # 04:00 in Berlin
    ShiftKey(date=datetime.date(2026, 3, 10), name='night')
    >>> span = shift_span(date(2026, 3, 28), "night", plant)          # the night DST starts
    >>> span.start.isoformat(), span.end.isoformat(), span.hours
    ('2026-03-28T21:00:00+00:00', '2026-03-29T04:00:00+00:00', 7.0)

The rules, and why:

- Shifts are set by their local wall-clock start times; each runs until the next one starts.
  That is how a plant's rota reads, so on the days the clocks change one shift is an hour
  shorter or longer (the night shift above has 7 hours, not 8) instead of every boundary
  moving off the hour.
- A shift belongs to the local date it started on: the 22:00-06:00 night shift of the 10th
  includes 03:00 on the 11th.
- A boundary is the first instant the wall clock reaches the start time. A start inside the
  spring-forward gap (02:30 where clocks jump from 02:00 to 03:00) begins at the jump; a start
  inside the repeated autumn hour begins at its first occurrence, so a shift never ends and
  restarts when the clock goes back.
- Instants must be timezone-aware (the store keeps UTC); a naive one is refused rather than
  guessed.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time, timedelta
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from pydantic import BaseModel, ConfigDict, Field, field_validator, model_validator


class Shift(BaseModel):
    """One shift of the rota: its name and its local start time."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    name: str = Field(min_length=1, max_length=40)
    start: time

    @field_validator("start")
    @classmethod
    def _wall_clock(cls, value: time) -> time:
        if value.tzinfo is not None:
            raise ValueError("a shift's start is a local wall-clock time, without a zone")
        return value


class ShiftSettings(BaseModel):
    """A plant's shifts: an IANA time zone and the shifts' local start times (any order;
    kept sorted by start)."""

    model_config = ConfigDict(extra="forbid", frozen=True)
    timezone: str = Field(description="IANA time zone of the plant, e.g. Europe/Berlin")
    shifts: tuple[Shift, ...] = Field(min_length=1)

    @field_validator("timezone")
    @classmethod
    def _known_zone(cls, value: str) -> str:
        try:
            ZoneInfo(value)
        except (ZoneInfoNotFoundError, ValueError) as error:
            raise ValueError(f"unknown IANA time zone {value!r} (e.g. Europe/Berlin, "
                             "America/Chicago, UTC)") from error
        return value

    @model_validator(mode="after")
    def _distinct(self) -> ShiftSettings:
        names = [shift.name for shift in self.shifts]
        starts = [shift.start for shift in self.shifts]
        if len(set(names)) != len(names):
            raise ValueError(f"shift names must differ, got {names}")
        if len(set(starts)) != len(starts):
            raise ValueError("two shifts start at the same time")
        object.__setattr__(self, "shifts", tuple(sorted(self.shifts, key=lambda s: s.start)))
        return self

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    @classmethod
    def equal(cls, timezone: str, *, first_start: str | time = "06:00",
              names: tuple[str, ...] = ("early", "late", "night")) -> ShiftSettings:
        """len(names) shifts of equal length filling the day, the first at `first_start`."""
        start = first_start if isinstance(first_start, time) else time.fromisoformat(first_start)
        if not names:
            raise ValueError("at least one shift name is needed")
        minutes = 24 * 60 // len(names)
        base = start.hour * 60 + start.minute
        shifts = [Shift(name=name, start=time(((base + i * minutes) // 60) % 24,
                                              (base + i * minutes) % 60))
                  for i, name in enumerate(names)]
        return cls(timezone=timezone, shifts=tuple(shifts))


@dataclass(frozen=True)
class ShiftKey:
    """A shift as dashboards group by it: the local date it started on, and its name."""

    date: date
    name: str


@dataclass(frozen=True)
class ShiftSpan:
    """One shift on one day, with its UTC bounds: start inclusive, end exclusive."""

    date: date
    name: str
    start: datetime
    end: datetime

    @property
    def key(self) -> ShiftKey:
        return ShiftKey(self.date, self.name)

    @property
    def hours(self) -> float:
        return (self.end - self.start).total_seconds() / 3600

    def __contains__(self, instant: datetime) -> bool:
        return self.start <= instant < self.end


def first_instant(day: date, wall: time, zone: ZoneInfo) -> datetime:
    """The first UTC instant at which the clock in `zone` reads `wall` (or later) on `day`."""
    naive = datetime.combine(day, wall)
    earlier = naive.replace(tzinfo=zone, fold=0).astimezone(UTC)  # first of a repeated time
    if earlier.astimezone(zone).replace(tzinfo=None) == naive:
        return earlier
    # `wall` falls in a spring-forward gap: the clock never reads it, and passes it at the
    # jump. fold=1 maps it before the jump and fold=0 after; search between, to the second.
    low = int(naive.replace(tzinfo=zone, fold=1).astimezone(UTC).timestamp())
    high = int(earlier.timestamp())
    while high - low > 1:
        middle = (low + high) // 2
        local = datetime.fromtimestamp(middle, UTC).astimezone(zone).replace(tzinfo=None)
        if local >= naive:
            high = middle
        else:
            low = middle
    return datetime.fromtimestamp(high, UTC)


def _spans_of_day(day: date, settings: ShiftSettings, zone: ZoneInfo) -> list[ShiftSpan]:
    starts = [first_instant(day, shift.start, zone) for shift in settings.shifts]
    starts.append(first_instant(day + timedelta(days=1), settings.shifts[0].start, zone))
    return [ShiftSpan(day, shift.name, starts[i], starts[i + 1])
            for i, shift in enumerate(settings.shifts)]


def shift_span(day: date, name: str, settings: ShiftSettings) -> ShiftSpan:
    """Shift `name` that starts on local date `day`, with its UTC bounds."""
    for span in _spans_of_day(day, settings, settings.zone):
        if span.name == name:
            return span
    raise ValueError(f"no shift named {name!r}; the plant's shifts are "
                     f"{', '.join(s.name for s in settings.shifts)}")


def shift_spans(first: date, last: date, settings: ShiftSettings) -> list[ShiftSpan]:
    """Every shift starting on local dates first..last (inclusive), in time order: the
    buckets a dashboard groups inspections into (each span is a UTC range to query)."""
    zone = settings.zone
    spans: list[ShiftSpan] = []
    day = first
    while day <= last:
        spans.extend(_spans_of_day(day, settings, zone))
        day += timedelta(days=1)
    return spans


def shift_of(instant: datetime, settings: ShiftSettings) -> ShiftKey:
    """The (local date it started on, name) of the shift `instant` falls in."""
    if instant.tzinfo is None or instant.utcoffset() is None:
        raise ValueError(f"{instant.isoformat()} has no time zone; give UTC instants "
                         "(datetime(..., tzinfo=UTC))")
    zone = settings.zone
    local_day = instant.astimezone(zone).date()
    # A shift started on the local date or, past midnight, on the day before.
    for day in (local_day, local_day - timedelta(days=1)):
        for span in _spans_of_day(day, settings, zone):
            if instant in span:
                return span.key
    raise AssertionError(f"no shift contains {instant.isoformat()}")  # spans tile the time line


def shift_label(key: str, translate: Callable[[str], str]) -> str:
    """A by-shift row's key ('2026-03-02 night') with the shift's name in a reader's language."""
    day, _, name = key.partition(" ")
    return f"{day} {translate(name)}" if name else key
