"""Incidents: the alarms that fire together at a station, as one problem that lists its rules
and classes and is acknowledged once.

Example::

    store = IncidentStore(db)
    store.raise_alarm(AlarmKind.SPC, "line1", "", "EWMA", "...")       # opens line1's incident
    store.raise_alarm(AlarmKind.SPC, "line1", "scratch", "CUSUM", "...")  # joins it
    [incident] = store.incidents(unacknowledged=True)
    incident.rules, incident.classes                                    # ['CUSUM', 'EWMA'], ['', 'scratch']
    store.acknowledge_incident(incident.id, by="kim", note="nozzle cleaned")  # and all its alarms

Why incidents: one step in one station's defect rate raised 17 open alarms, per class and for
the station, EWMA, CUSUM and WE1 (issue 26), each to be acknowledged on its own. They are one
problem. An incident is open while any of its alarms holds; every alarm raised at the station
meanwhile joins it (inspection/store/alarms.py keeps one open incident per station); when all
have cleared it closes, and the next alarm there opens a new one.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

from sqlalchemy import select, update

from inspection.errors import ConfigError, NotFound
from inspection.store.alarms import AlarmKind, AlarmRecord, AlarmStore, _alarm
from inspection.store.records import iso_z, utcnow
from inspection.store.schema import alarms, incidents

# Most severe first: what an incident is called when its alarms are of several kinds.
KIND_ORDER = (AlarmKind.EQUIPMENT, AlarmKind.SPC, AlarmKind.MODEL, AlarmKind.MIX)


@dataclass(frozen=True)
class IncidentRecord:
    id: int
    station_id: str
    opened_at: datetime
    closed_at: datetime | None
    acknowledged_by: str | None
    acknowledged_at: datetime | None
    note: str
    alarms: list[AlarmRecord] = field(default_factory=list)  # oldest first

    @property
    def open(self) -> bool:
        """Some alarm of it still holds."""
        return self.closed_at is None

    @property
    def kind(self) -> AlarmKind:
        kinds = {a.kind for a in self.alarms}
        return next((k for k in KIND_ORDER if k in kinds), AlarmKind.SPC)

    @property
    def kinds(self) -> list[AlarmKind]:
        kinds = {a.kind for a in self.alarms}
        return [k for k in KIND_ORDER if k in kinds]

    @property
    def rules(self) -> list[str]:
        return sorted({a.rule for a in self.alarms})

    @property
    def classes(self) -> list[str]:
        """The classes charted ("" is the station as a whole), the station first."""
        return sorted({a.class_name for a in self.alarms})

    @property
    def since(self) -> datetime:
        """When its change began, as far as its alarms know (else when it opened)."""
        return min((a.since for a in self.alarms if a.since is not None), default=self.opened_at)

    @property
    def headline(self) -> AlarmRecord:
        """The alarm that says most of it: equipment before the defect rate, the station's own
        chart before a class's, EWMA before CUSUM before WE1 before the other rules."""
        kinds = {kind: i for i, kind in enumerate(self.kinds)}
        order = {"EWMA": 0, "CUSUM": 1, "WE1": 2}
        return min(self.alarms, key=lambda a: (kinds.get(a.kind, 9), a.class_name != "", order.get(a.rule, 5), a.id))

    @property
    def active(self) -> list[AlarmRecord]:
        return [a for a in self.alarms if a.cleared_at is None]

    def to_json(self) -> dict[str, Any]:
        return {"id": self.id, "station": self.station_id, "kind": self.kind.value,
                "kinds": [k.value for k in self.kinds], "rules": self.rules, "classes": self.classes,
                "opened_at": iso_z(self.opened_at), "since": iso_z(self.since), "closed_at": iso_z(self.closed_at),
                "acknowledged_by": self.acknowledged_by, "acknowledged_at": iso_z(self.acknowledged_at),
                "note": self.note, "alarms": [a.to_json() for a in self.alarms]}


class IncidentStore(AlarmStore):
    """Alarms, grouped: the incidents and their alarms, and acknowledging an incident."""

    def incidents(self, *, unacknowledged: bool = False, open_only: bool = False, station: str | None = None,
                  since: datetime | None = None, until: datetime | None = None,
                  limit: int = 50) -> list[IncidentRecord]:
        """Newest first, each with its alarms."""
        query = select(incidents)
        if unacknowledged:
            query = query.where(incidents.c.acknowledged_at.is_(None))
        if open_only:
            query = query.where(incidents.c.closed_at.is_(None))
        if station:
            query = query.where(incidents.c.station_id == station)
        if since is not None:
            query = query.where(incidents.c.opened_at >= since)
        if until is not None:
            query = query.where(incidents.c.opened_at < until)
        with self.db.engine.connect() as conn:
            rows = list(conn.execute(query.order_by(incidents.c.id.desc()).limit(limit)).mappings())
            members: dict[int, list[AlarmRecord]] = {int(r["id"]): [] for r in rows}
            if members:
                found = conn.execute(select(alarms).where(alarms.c.incident_id.in_(list(members)))
                                     .order_by(alarms.c.id)).mappings()
                for row in found:
                    members[int(row["incident_id"])].append(_alarm(row))
        return [_incident(r, members[int(r["id"])]) for r in rows]

    def incident(self, incident_id: int) -> IncidentRecord:
        with self.db.engine.connect() as conn:
            row = conn.execute(select(incidents).where(incidents.c.id == incident_id)).mappings().first()
            if row is None:
                raise NotFound(f"incident {incident_id} does not exist")
            members = [_alarm(a) for a in conn.execute(select(alarms).where(alarms.c.incident_id == incident_id)
                                                       .order_by(alarms.c.id)).mappings()]
        return _incident(row, members)

    def acknowledge_incident(self, incident_id: int, *, by: str, note: str = "") -> IncidentRecord:
        """Acknowledge the incident and every alarm in it, once (alarms that join it later are
        acknowledged with it)."""
        if len(note) > 2000:
            raise ConfigError("a note holds at most 2000 characters")
        now = utcnow()
        with self.db.engine.begin() as conn:
            done = conn.execute(update(incidents).where(incidents.c.id == incident_id).values(
                acknowledged_by=by, acknowledged_at=now, note=note)).rowcount
            if done:
                conn.execute(update(alarms).where(alarms.c.incident_id == incident_id).values(
                    acknowledged_by=by, acknowledged_at=now, note=note))
        if not done:
            raise NotFound(f"incident {incident_id} does not exist")
        return self.incident(incident_id)


def _incident(row, members: list[AlarmRecord]) -> IncidentRecord:
    return IncidentRecord(id=int(row["id"]), station_id=row["station_id"], opened_at=row["opened_at"],
                          closed_at=row["closed_at"], acknowledged_by=row["acknowledged_by"],
                          acknowledged_at=row["acknowledged_at"], note=row["note"] or "", alarms=members)
