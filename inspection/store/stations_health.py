"""Station health: each agent's last heartbeat, and whether a station has gone silent.

Example::

    health = StationHealthStore(db)
    health.record("press-3", Heartbeat(agent_version="0.1.0", interval_s=30, shift="06:00-22:00",
                                       counters={"spool_depth": 0, "dropped": 0, "deadline_misses": 2}))
    health.of("press-3").silent(now=utcnow())     # False while beats arrive

A station is silent when no beat came for `SILENT_AFTER` intervals and the time now is inside
its shift (HH:MM-HH:MM, UTC, as its agent last reported; a shift may pass midnight; no shift
means always). The agent cannot report that it stopped, so the service decides from the age
of the last beat.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta
from typing import Any

from sqlalchemy import delete, insert, select

from inspection.store.database import Database
from inspection.store.records import utcnow
from inspection.store.schema import station_health

SILENT_AFTER = 3  # missed intervals: one lost beat is noise, three are a station down


@dataclass(frozen=True)
class Heartbeat:
    agent_version: str
    interval_s: float
    shift: str | None = None
    counters: dict[str, Any] = field(default_factory=dict)  # last capture/verdict, spool depth, drops, misses


def parse_shift(shift: str) -> tuple[time, time]:
    """`"06:00-22:00"` -> (06:00, 22:00); ValueError naming the fix for anything else (hour 25,
    minute 61, "6-22"), so one station's typo cannot break every reader of its health."""
    match = re.fullmatch(r"(\d\d:\d\d)-(\d\d:\d\d)", shift)
    try:
        if match is None:
            raise ValueError
        return time.fromisoformat(match[1]), time.fromisoformat(match[2])
    except ValueError:
        raise ValueError(f"shift {shift[:40]!r} is not HH:MM-HH:MM with hours 00-23 and minutes 00-59 "
                         "(UTC; e.g. 22:00-06:00 passes midnight)") from None


@dataclass(frozen=True)
class StationHealth:
    station_id: str
    last_seen_at: datetime
    agent_version: str
    interval_s: float
    shift: str | None
    counters: dict[str, Any]

    def in_shift(self, now: datetime) -> bool:
        try:
            start, end = parse_shift(self.shift) if self.shift else (None, None)
        except ValueError:  # stored before shifts were checked at the door: watch it always
            return True
        if start is None or end is None:
            return True
        moment = now.time()
        return start <= moment < end if start <= end else moment >= start or moment < end

    def silent(self, now: datetime | None = None) -> bool:
        now = now or utcnow()
        overdue = now - self.last_seen_at > timedelta(seconds=SILENT_AFTER * self.interval_s)
        return overdue and self.in_shift(now)


class StationHealthStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    def record(self, station_id: str, beat: Heartbeat, *, at: datetime | None = None) -> StationHealth:
        """Replace the station's last beat (the station must exist: a foreign key)."""
        row = {"station_id": station_id, "last_seen_at": at or utcnow(), "agent_version": beat.agent_version[:32],
               "interval_s": beat.interval_s, "shift": beat.shift, "body": beat.counters}
        with self.db.engine.begin() as conn:  # delete + insert: the same on SQLite and PostgreSQL
            conn.execute(delete(station_health).where(station_health.c.station_id == station_id))
            conn.execute(insert(station_health).values(**row))
        return _health(row)

    def of(self, station_id: str) -> StationHealth | None:
        with self.db.engine.connect() as conn:
            row = conn.execute(select(station_health).where(station_health.c.station_id == station_id)
                               ).mappings().first()
        return _health(row) if row else None

    def all(self) -> dict[str, StationHealth]:
        with self.db.engine.connect() as conn:
            return {row["station_id"]: _health(row) for row in conn.execute(select(station_health)).mappings()}


def _health(row) -> StationHealth:
    return StationHealth(station_id=row["station_id"], last_seen_at=row["last_seen_at"],
                         agent_version=row["agent_version"], interval_s=row["interval_s"], shift=row["shift"],
                         counters=dict(row["body"] or {}))
