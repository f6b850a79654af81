"""Alarms as rows: each raised once per active condition, cleared when it ends, acknowledged
by a person.

Example::

    alarms = AlarmStore(db)
    alarm = alarms.raise_alarm(AlarmKind.SPC, "line1-cam2", "", "EWMA", "...")   # None: already raised
    alarms.acknowledge(alarm.id, by="kim", note="lens cleaned")

The alarms table's unique active key (station, class, rule) holds across service processes,
so a condition is stored once however many evaluators see it (serving/alarms.py).

Every new alarm joins its station's open incident, or opens one: one open incident per station
(the incidents table's unique active key), open while any of its alarms holds, so the alarms
that fire together at a station are one problem, acknowledged once (inspection/store/
incidents.py). An alarm that joins an incident already acknowledged is acknowledged with it.
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlalchemy import and_, exists, func, select, update
from sqlalchemy.exc import IntegrityError

from inspection.analytics.phrases import Phrase
from inspection.analytics.plant_time import PlantClock
from inspection.errors import ConfigError, NotFound
from inspection.store.database import Database
from inspection.store.records import iso_z, utcnow
from inspection.store.schema import alarms, incidents


class AlarmKind(StrEnum):
    SPC = "spc"  # the defect rate moved (a control chart rule)
    EQUIPMENT = "equipment"  # the images moved: light, lens, camera
    MODEL = "model"  # the confidences moved, the images did not: relabel and retrain
    MIX = "mix"  # the images moved with the defect rate, the passing parts' did not: the parts changed


@dataclass(frozen=True)
class AlarmRecord:
    id: int
    station_id: str
    class_name: str
    kind: AlarmKind
    rule: str
    side: str | None
    message: str
    raised_at: datetime
    since: datetime | None
    cleared_at: datetime | None
    acknowledged_by: str | None
    acknowledged_at: datetime | None
    note: str
    incident_id: int | None = None
    phrase: Phrase | None = None

    @property
    def key(self) -> str:
        return alarm_key(self.station_id, self.class_name, self.rule)

    def text(self, translate=None, clock: PlantClock | None = None, *, lang: str = "en") -> str:
        """The message in a reader's language and the plant's time (the stored English text
        for an alarm stored before its phrase was)."""
        if self.phrase is None:
            return self.message
        return self.phrase.render(translate or (lambda s: s), clock, lang=lang)

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "station": self.station_id, "class": self.class_name, "kind": self.kind.value,
                "rule": self.rule, "side": self.side, "message": self.message,
                "raised_at": iso_z(self.raised_at), "since": iso_z(self.since), "cleared_at": iso_z(self.cleared_at),
                "acknowledged_by": self.acknowledged_by, "acknowledged_at": iso_z(self.acknowledged_at),
                "note": self.note, "incident": self.incident_id}


def alarm_key(station: str, class_name: str, rule: str) -> str:
    return f"{station}|{class_name}|{rule}"


class AlarmStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    def raise_alarm(self, kind: AlarmKind, station: str, class_name: str, rule: str, message: str, *,
                    side: str | None = None, since: datetime | None = None,
                    phrase: Phrase | None = None) -> AlarmRecord | None:
        """Store an alarm unless the same (station, class, rule) is active: returns the new
        alarm (in its station's open incident), or None when it was already raised and has not
        cleared since. `phrase`: the message as a template and values, for other languages."""
        key = alarm_key(station, class_name, rule)
        now = utcnow()
        try:
            with self.db.engine.begin() as conn:
                new_id = int(conn.execute(alarms.insert().values(
                    station_id=station, class_name=class_name, kind=AlarmKind(kind).value, rule=rule, side=side,
                    message=message, raised_at=now, since=since, active_key=key, note="",
                    phrase=phrase.dumps() if phrase else None,
                )).inserted_primary_key[0])  # type: ignore[index]  # never None after an insert
        except IntegrityError:
            return None  # the unique active_key: this condition is already stored
        self._join_incident(new_id, station, now)
        return self.alarm(new_id)

    def _join_incident(self, alarm_id: int, station: str, now: datetime) -> None:
        """Put the alarm into its station's open incident, opening one when none is; an
        incident acknowledged already acknowledges the alarm too (one problem, acknowledged once)."""
        for _ in range(3):  # another process may open or close the station's incident meanwhile
            with self.db.engine.begin() as conn:
                row = conn.execute(select(incidents).where(incidents.c.active_key == station)).mappings().first()
                if row is not None:
                    conn.execute(update(alarms).where(alarms.c.id == alarm_id).values(
                        incident_id=row["id"], acknowledged_by=row["acknowledged_by"],
                        acknowledged_at=row["acknowledged_at"], note=row["note"] or ""))
                    return
            try:
                with self.db.engine.begin() as conn:
                    incident_id = conn.execute(incidents.insert().values(
                        station_id=station, opened_at=now, active_key=station, note="",
                    )).inserted_primary_key[0]  # type: ignore[index]
                    conn.execute(update(alarms).where(alarms.c.id == alarm_id).values(incident_id=incident_id))
                    return
            except IntegrityError:
                continue  # opened by another process a moment ago: join it

    def active(self, station: str | None = None) -> dict[str, AlarmRecord]:
        """Alarms whose condition still holds (not cleared), by key."""
        query = select(alarms).where(alarms.c.active_key.is_not(None))
        if station:
            query = query.where(alarms.c.station_id == station)
        with self.db.engine.connect() as conn:
            return {a.key: a for a in map(_alarm, conn.execute(query).mappings())}

    def clear(self, keys: Iterable[str]) -> int:
        """The conditions behind these keys ended: a new occurrence may be raised again."""
        keys = list(keys)
        if not keys:
            return 0
        now = utcnow()
        with self.db.engine.begin() as conn:
            cleared = conn.execute(update(alarms).where(alarms.c.active_key.in_(keys))
                                   .values(active_key=None, cleared_at=now)).rowcount
            # An incident ends when none of its alarms holds any more.
            holding = exists().where(and_(alarms.c.incident_id == incidents.c.id, alarms.c.active_key.is_not(None)))
            conn.execute(update(incidents).where(incidents.c.active_key.is_not(None), ~holding)
                         .values(active_key=None, closed_at=now))
        return cleared

    def acknowledge(self, alarm_id: int, *, by: str, note: str = "") -> AlarmRecord:
        if len(note) > 2000:
            raise ConfigError("a note holds at most 2000 characters")
        with self.db.engine.begin() as conn:
            done = conn.execute(update(alarms).where(alarms.c.id == alarm_id).values(
                acknowledged_by=by, acknowledged_at=utcnow(), note=note)).rowcount
        if not done:
            raise NotFound(f"alarm {alarm_id} does not exist")
        return self.alarm(alarm_id)

    def alarm(self, alarm_id: int) -> AlarmRecord:
        with self.db.engine.connect() as conn:
            row = conn.execute(select(alarms).where(alarms.c.id == alarm_id)).mappings().first()
        if row is None:
            raise NotFound(f"alarm {alarm_id} does not exist")
        return _alarm(row)

    def alarms(self, *, unacknowledged: bool = False, since: datetime | None = None,
               until: datetime | None = None, station: str | None = None, limit: int = 200) -> list[AlarmRecord]:
        """Newest first."""
        query = select(alarms)
        if unacknowledged:
            query = query.where(alarms.c.acknowledged_at.is_(None))
        if since is not None:
            query = query.where(alarms.c.raised_at >= since)
        if until is not None:
            query = query.where(alarms.c.raised_at < until)
        if station:
            query = query.where(alarms.c.station_id == station)
        with self.db.engine.connect() as conn:
            return [_alarm(r) for r in conn.execute(query.order_by(alarms.c.id.desc()).limit(limit)).mappings()]

    def open_counts(self) -> dict[str, int]:
        """Unacknowledged alarms by kind (a Prometheus gauge)."""
        query = (select(alarms.c.kind, func.count()).where(alarms.c.acknowledged_at.is_(None))
                 .group_by(alarms.c.kind))
        with self.db.engine.connect() as conn:
            return {kind: int(n) for kind, n in conn.execute(query)}


def _alarm(row) -> AlarmRecord:
    return AlarmRecord(id=int(row["id"]), station_id=row["station_id"], class_name=row["class_name"],
                       kind=AlarmKind(row["kind"]), rule=row["rule"], side=row["side"], message=row["message"],
                       raised_at=row["raised_at"], since=row["since"], cleared_at=row["cleared_at"],
                       acknowledged_by=row["acknowledged_by"], acknowledged_at=row["acknowledged_at"],
                       note=row["note"] or "", incident_id=row.get("incident_id"),
                       phrase=Phrase.loads(row.get("phrase")))
