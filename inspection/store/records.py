"""Stations with versioned rules, and inspection records: written once, read many ways.

Example::

    store = RecordStore(db)
    store.add_station("line1-cam2", rules=StationRules())
    saved, created = store.save_inspection(record)     # idempotent by (station, key)
    results = store.save_many([a, b, c])                # one transaction; a failure fails alone
    page = store.list_inspections(InspectionFilter(station="line1-cam2", verdict="FAIL"))
    station, done = store.admission("line1-cam2", "key-1")  # a frame's reads: station, replay
"""

from __future__ import annotations

import re
import secrets
import time
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Connection, and_, bindparam, exists, func, select
from sqlalchemy.exc import IntegrityError, SQLAlchemyError
from sqlalchemy.sql.elements import ColumnElement

from inspection.errors import ConfigError, Conflict, NotFound
from inspection.rules import StationRules, Verdict
from inspection.store.database import Database
from inspection.store.schema import defects, inspections, shadow_results, station_rules, stations

# A station id is a path segment of /v1/stations/{station}/inspect: the API and the CLI share this.
STATION_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


def utcnow() -> datetime:
    """Naive UTC: stored the same way in SQLite (no time zones) and PostgreSQL."""
    return datetime.now(UTC).replace(tzinfo=None)


def iso_z(value: datetime | None) -> str | None:
    """A naive UTC instant as ISO 8601 to the second with a Z ("2026-03-02T06:00:00Z"); None stays None."""
    return None if value is None else value.isoformat(timespec="seconds") + "Z"


def new_id() -> str:
    """32 hex characters, sortable by creation time (ms), unique without coordination."""
    return f"{int(time.time() * 1000):012x}{secrets.token_hex(10)}"


@dataclass(frozen=True)
class Station:
    id: str
    description: str
    rules_version: int
    rules: StationRules
    created_at: datetime
    reference_version: int | None = None  # its golden part in use (inspection/store/references.py)
    product: str | None = None  # the product on the line now (inspection/store/products.py)


@dataclass
class InspectionRecord:
    station_id: str
    verdict: Verdict
    rule: str
    model_name: str
    model_version: str
    rules_version: int
    width: int
    height: int
    detections: list[dict[str, Any]]  # Detections.to_records() plus "area"
    timings: dict[str, float]
    part_id: str | None = None
    idempotency_key: str | None = None
    image_sha256: str | None = None
    image_format: str | None = None
    request_id: str | None = None
    # Image statistics and the highest box confidence (schema.FRAME_COLUMNS, made from
    # analytics.image_stats.Statistic), for drift alarms; tests/test_store.py checks that these
    # fields are exactly those columns.
    brightness: float | None = None
    contrast: float | None = None
    sharpness: float | None = None
    blue: float | None = None
    green: float | None = None
    red: float | None = None
    max_confidence: float | None = None
    # Reference inspection: the station reference version judged against, the alignment's
    # score (0..1) and the shift applied, in frame pixels (inspection/detect/reference.py).
    reference_version: int | None = None
    alignment_score: float | None = None
    alignment_shift: float | None = None
    # The product judged and its profile version (inspection/store/products.py); None: none.
    product: str | None = None
    product_version: int | None = None
    id: str = field(default_factory=new_id)
    created_at: datetime = field(default_factory=utcnow)

    def to_json(self) -> dict[str, Any]:
        data = asdict(self)
        data["created_at"] = self.created_at.isoformat(timespec="milliseconds") + "Z"
        return data


@dataclass(frozen=True)
class InspectionFilter:
    station: str | None = None
    verdict: Verdict | None = None
    class_name: str | None = None
    part_id: str | None = None
    since: datetime | None = None
    until: datetime | None = None
    product: str | None = None


class RecordStore:
    def __init__(self, db: Database) -> None:
        self.db = db

    # -- stations and rules ----------------------------------------------------------------

    def add_station(self, station_id: str, *, rules: StationRules, description: str = "",
                    created_by: str | None = None) -> Station:
        if not STATION_ID.fullmatch(station_id):
            raise ConfigError(
                f"station id {station_id!r}: use letters, digits, '.', '_' and '-' (up to 64, "
                "starting with a letter or digit), e.g. line1-cam2; it becomes part of the URL")
        now = utcnow()
        try:
            with self.db.engine.begin() as conn:
                conn.execute(stations.insert().values(
                    id=station_id, description=description, rules_version=1, created_at=now))
                conn.execute(station_rules.insert().values(
                    station_id=station_id, version=1, body=rules.model_dump(mode="json"),
                    created_at=now, created_by=created_by))
        except IntegrityError as error:
            raise Conflict(f"station {station_id} already exists; change its rules with qc stations rules") from error
        return self.station(station_id)

    def set_rules(self, station_id: str, rules: StationRules, *, created_by: str | None = None) -> Station:
        """A new rules version; earlier versions stay, for the records they judged."""
        # The UPDATE comes first: it takes SQLite's write lock (a SELECT would not, and two
        # writers would both claim the same version) and PostgreSQL's row lock, so concurrent
        # changes queue up and each gets its own version.
        with self.db.engine.begin() as conn:
            bumped = conn.execute(stations.update().where(stations.c.id == station_id)
                                  .values(rules_version=stations.c.rules_version + 1))
            if not bumped.rowcount:
                raise NotFound(f"station {station_id} does not exist; add it with qc stations add {station_id}")
            version = conn.execute(select(stations.c.rules_version).where(stations.c.id == station_id)).scalar()
            conn.execute(station_rules.insert().values(
                station_id=station_id, version=version, body=rules.model_dump(mode="json"),
                created_at=utcnow(), created_by=created_by))
        return self.station(station_id)

    def station(self, station_id: str) -> Station:
        with self.db.engine.connect() as conn:
            return _read_station(conn, station_id)

    def admission(self, station_id: str, key: str | None) -> tuple[Station, InspectionRecord | None]:
        """The station, and the record already acknowledged under `key` (None without one),
        read on one connection: what every inspected frame reads before it is judged."""
        with self.db.engine.connect() as conn:
            return _read_station(conn, station_id), None if key is None else _read_by_key(conn, station_id, key)

    def stations(self) -> list[Station]:
        with self.db.engine.connect() as conn:
            return [_station(row) for row in conn.execute(_WITH_RULES.order_by(stations.c.id)).mappings()]

    def rules_history(self, station_id: str) -> list[dict[str, Any]]:
        self.station(station_id)
        query = (select(station_rules).where(station_rules.c.station_id == station_id)
                 .order_by(station_rules.c.version))
        with self.db.engine.connect() as conn:
            return [
                {"version": r["version"], "rules": r["body"], "created_at": r["created_at"].isoformat() + "Z",
                 "created_by": r["created_by"]}
                for r in conn.execute(query).mappings()
            ]

    # -- inspections -----------------------------------------------------------------------

    def save_inspection(self, record: InspectionRecord) -> tuple[InspectionRecord, bool]:
        """Commit a record; returns (record, True), or (the original, False) when the station
        already has a record with this idempotency key (a retried post)."""
        values = _values(record)
        try:
            with self.db.engine.begin() as conn:
                conn.execute(inspections.insert().values(**values))
                if record.detections:
                    conn.execute(defects.insert(), _defect_rows(record))
        except IntegrityError:
            # The unique (station, key) constraint is the check: a retry that raced past the
            # route's lookup gets the record the first post committed.
            if values["idempotency_key"] is None:
                raise
            existing = self.find_by_key(record.station_id, values["idempotency_key"])
            if existing is None:
                raise
            return existing, False
        return record, True

    def save_many(self, records: list[InspectionRecord]) -> list[tuple[InspectionRecord, bool] | Exception]:
        """Commit several records in one transaction: one commit, so one fsync of SQLite's WAL
        or PostgreSQL's, for the lot (group commit, serving/committer.py). Each gets what
        `save_inspection` would have given it, or the exception that refused it alone: when
        the group's transaction fails (a retried key, a value the database refuses), nothing
        of it was committed and each record is committed on its own, so the others still are."""
        if len(records) == 1:
            return [self._save_alone(records[0])]
        try:
            with self.db.engine.begin() as conn:
                conn.execute(inspections.insert(), [_values(r) for r in records])
                rows = [row for r in records for row in _defect_rows(r)]
                if rows:
                    conn.execute(defects.insert(), rows)
        except SQLAlchemyError:
            return [self._save_alone(r) for r in records]
        return [(r, True) for r in records]

    def _save_alone(self, record: InspectionRecord) -> tuple[InspectionRecord, bool] | Exception:
        try:
            return self.save_inspection(record)
        except Exception as error:  # noqa: BLE001 - handed to this record's caller alone
            return error

    def find_by_key(self, station_id: str, key: str) -> InspectionRecord | None:
        with self.db.engine.connect() as conn:
            return _read_by_key(conn, station_id, key)

    def inspection(self, inspection_id: str) -> InspectionRecord:
        with self.db.engine.connect() as conn:
            row = conn.execute(select(inspections).where(inspections.c.id == inspection_id)).mappings().first()
        if row is None:
            raise NotFound(f"inspection {inspection_id} does not exist")
        return _record(row)

    def list_inspections(
        self, where: InspectionFilter, *, limit: int = 50, cursor: str | None = None
    ) -> tuple[list[InspectionRecord], str | None]:
        """Newest first; pass the returned cursor to get the next page (None: no more)."""
        query = select(inspections)
        conditions = inspection_conditions(
            station=where.station, verdicts=[Verdict(where.verdict).value] if where.verdict else None,
            part_id=where.part_id, since=where.since, until=where.until, class_name=where.class_name,
            product=where.product)
        if cursor:
            conditions.append(inspections.c.id < cursor)
        if conditions:
            query = query.where(and_(*conditions))
        query = query.order_by(inspections.c.id.desc()).limit(limit + 1)
        with self.db.engine.connect() as conn:
            rows = conn.execute(query).mappings().all()
        records = [_record(row) for row in rows[:limit]]
        return records, (records[-1].id if len(rows) > limit else None)

    def count(self) -> int:
        with self.db.engine.connect() as conn:
            return int(conn.execute(select(func.count()).select_from(inspections)).scalar() or 0)

    # -- shadow mode -----------------------------------------------------------------------

    def save_shadow(self, inspection_id: str, *, model_name: str, model_version: str,
                    verdict: Verdict, detections: list[dict[str, Any]]) -> None:
        with self.db.engine.begin() as conn:
            conn.execute(shadow_results.insert().values(
                inspection_id=inspection_id, model_name=model_name, model_version=model_version,
                verdict=Verdict(verdict).value, detections=detections, created_at=utcnow()))

    def with_images_since(self, since: datetime) -> list[InspectionRecord]:
        """Every inspection recorded at or after `since` whose image is stored (what could be
        labelled), oldest id first: the active-learning sampler's candidates."""
        query = (select(inspections).where(inspections.c.created_at >= since, inspections.c.image_sha256.is_not(None))
                 .order_by(inspections.c.id))
        with self.db.engine.connect() as conn:
            return [_record(row) for row in conn.execute(query).mappings()]

    def shadows_of(self, inspection_ids: list[str]) -> dict[str, list[dict[str, Any]]]:
        """The shadow models' results per inspection (model_name, model_version, verdict,
        detections), in the order they were saved; an inspection without any is absent."""
        found: dict[str, list[dict[str, Any]]] = {}
        if not inspection_ids:
            return found
        query = (select(shadow_results).where(shadow_results.c.inspection_id.in_(inspection_ids))
                 .order_by(shadow_results.c.id))
        with self.db.engine.connect() as conn:
            for row in conn.execute(query).mappings():
                found.setdefault(row["inspection_id"], []).append(dict(row))
        return found

    def shadow_agreement(self, model_version: str | None = None) -> dict[str, Any]:
        """Per class, how often the shadow model's verdict-relevant classes agree with
        production's on the same frames, and the overall verdict agreement."""
        query = select(shadow_results.c.model_version, shadow_results.c.verdict, shadow_results.c.detections,
                       inspections.c.verdict.label("production_verdict"),
                       inspections.c.detections.label("production_detections")).join(
            inspections, inspections.c.id == shadow_results.c.inspection_id)
        if model_version:
            query = query.where(shadow_results.c.model_version == model_version)
        frames = agree = 0
        per_class: dict[str, dict[str, float]] = {}  # counts, then "agreement" (a share)
        with self.db.engine.connect() as conn:
            for row in conn.execute(query).mappings():
                frames += 1
                agree += row["verdict"] == row["production_verdict"]
                prod = {d["class"] for d in row["production_detections"]}
                shadow = {d["class"] for d in row["detections"]}
                for name in prod | shadow:
                    stats = per_class.setdefault(name, {"both": 0, "production_only": 0, "shadow_only": 0})
                    key = "both" if name in prod and name in shadow else (
                        "production_only" if name in prod else "shadow_only")
                    stats[key] += 1
        for stats in per_class.values():
            total = sum(stats.values())
            stats["agreement"] = round(stats["both"] / total, 4) if total else 1.0
        return {"frames": frames, "verdict_agreement": round(agree / frames, 4) if frames else None,
                "per_class": per_class}


def _values(record: InspectionRecord) -> dict[str, Any]:
    values = asdict(record)
    values["verdict"] = Verdict(record.verdict).value  # the plain string, whatever the driver
    # A blank key is no key: stored as "" it would make every later blank-keyed frame of the
    # station a "retry" of the first one.
    values["idempotency_key"] = (record.idempotency_key or "").strip() or None
    return values


def _defect_rows(record: InspectionRecord) -> list[dict[str, Any]]:
    return [{"inspection_id": record.id, "class_name": d["class"], "confidence": d["confidence"]}
            for d in record.detections]


# The two reads every inspected frame makes, built once: building a SELECT with a join costs
# more than running it (station read 225 -> 74 us, both reads 380 -> 106 us per frame on this
# machine's SQLite; issue 16 in BENCHMARKS.md).
_WITH_RULES = select(stations, station_rules.c.body).join(
    station_rules, and_(station_rules.c.station_id == stations.c.id,
                        station_rules.c.version == stations.c.rules_version))
_STATION = _WITH_RULES.where(stations.c.id == bindparam("station_id"))
_BY_KEY = select(inspections).where(inspections.c.station_id == bindparam("station_id"),
                                    inspections.c.idempotency_key == bindparam("key"))


def _read_station(conn: Connection, station_id: str) -> Station:
    row = conn.execute(_STATION, {"station_id": station_id}).mappings().first()
    if row is None:
        raise NotFound(f"station {station_id} does not exist; add it with qc stations add {station_id}")
    return _station(row)


def _read_by_key(conn: Connection, station_id: str, key: str) -> InspectionRecord | None:
    row = conn.execute(_BY_KEY, {"station_id": station_id, "key": key}).mappings().first()
    return _record(row) if row else None


def _station(row) -> Station:
    return Station(id=row["id"], description=row["description"], rules_version=row["rules_version"],
                   rules=StationRules.model_validate(row["body"]), created_at=row["created_at"],
                   reference_version=row["reference_version"], product=row["product"])


def inspection_conditions(*, station: str | None = None, verdicts: list[str] | None = None,
                          model_version: str | None = None, part_id: str | None = None,
                          since: datetime | None = None, until: datetime | None = None,
                          class_name: str | None = None, product: str | None = None) -> list[ColumnElement[bool]]:
    """The WHERE conditions on `inspections` that the record listing and the review queue share
    (each None is no condition; `until` is exclusive; a class means a counted defect of it)."""
    conditions: list[ColumnElement[bool]] = []
    if station:
        conditions.append(inspections.c.station_id == station)
    if verdicts:
        conditions.append(inspections.c.verdict.in_(verdicts))
    if model_version:
        conditions.append(inspections.c.model_version == model_version)
    if part_id:
        conditions.append(inspections.c.part_id == part_id)
    if product:
        conditions.append(inspections.c.product == product)
    if since:
        conditions.append(inspections.c.created_at >= since)
    if until:
        conditions.append(inspections.c.created_at < until)
    if class_name:
        conditions.append(exists().where(defects.c.inspection_id == inspections.c.id,
                                         defects.c.class_name == class_name))
    return conditions


def _record(row) -> InspectionRecord:
    record = InspectionRecord(**{k: row[k] for k in InspectionRecord.__dataclass_fields__})
    record.verdict = Verdict(record.verdict)
    return record
