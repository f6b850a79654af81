"""Plant time: every time a person reads is shown in the plant's time zone, in one format per
language, by this one clock (the dashboard, alarm texts, the Loop page, the printed report).

Example::

    >>> from datetime import UTC, datetime
    >>> from inspection.analytics.plant_time import PlantClock
    >>> clock = PlantClock("Asia/Seoul")
    >>> clock.format(datetime(2026, 3, 2, 5, 20))                 # naive: UTC, as the store keeps it
    '2026-03-02 14:20'
    >>> clock.format("2026-03-01T21:00:05Z", seconds=True)        # an API's ISO text
    '2026-03-02 06:00:05'
    >>> clock.format(datetime(2026, 3, 2, 5, 20, tzinfo=UTC), lang="ko")
    '2026-03-02 14:20'

Why one format, and this one: the queue showed day-first dates beside month-first filters
(issue 26). Year-month-day with a 24-hour clock reads the same in English and Korean (it is
the Korean order, and ISO 8601's), sorts as text and cannot be misread as another date; a
language may still get its own pattern in FORMATS. Instants without a zone are UTC: the store
keeps naive UTC (inspection/store/records.py).
"""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, date, datetime
from zoneinfo import ZoneInfo

# One pattern per language (strftime): date and minutes; `seconds=True` appends ":%S".
FORMATS = {"en": "%Y-%m-%d %H:%M", "ko": "%Y-%m-%d %H:%M"}
DEFAULT_LANGUAGE = "en"


@dataclass(frozen=True)
class PlantClock:
    """Formats instants in the plant's time zone (an IANA name, QC_TIMEZONE)."""

    timezone: str

    @property
    def zone(self) -> ZoneInfo:
        return ZoneInfo(self.timezone)

    def local(self, value: datetime | str) -> datetime:
        """`value` (naive UTC, aware, or ISO text with Z or an offset) as an aware plant-local time."""
        if isinstance(value, str):
            value = datetime.fromisoformat(value.replace("Z", "+00:00"))
        if value.tzinfo is None:
            value = value.replace(tzinfo=UTC)
        return value.astimezone(self.zone)

    def format(self, value: datetime | str | None, *, lang: str = DEFAULT_LANGUAGE, seconds: bool = False) -> str:
        """Plant date and time as a person reads it ("" for None)."""
        if value is None or value == "":
            return ""
        pattern = FORMATS.get(lang, FORMATS[DEFAULT_LANGUAGE]) + (":%S" if seconds else "")
        return self.local(value).strftime(pattern)

    def day(self, value: datetime | str) -> date:
        """The plant-local calendar date of `value`."""
        return self.local(value).date()
