"""Tables of the record store (SQLAlchemy Core). Change them only together with a migration
in `migrations/versions/`; tests/test_store.py checks that the two agree."""

from __future__ import annotations

from sqlalchemy import (
    JSON,
    Column,
    DateTime,
    Float,
    ForeignKey,
    Index,
    Integer,
    MetaData,
    String,
    Table,
    Text,
    UniqueConstraint,
)

metadata = MetaData()

stations = Table(
    "stations",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("description", Text, nullable=False, default=""),
    Column("rules_version", Integer, nullable=False),
    Column("created_at", DateTime, nullable=False),
)

station_rules = Table(
    "station_rules",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("station_id", String(64), ForeignKey("stations.id"), nullable=False),
    Column("version", Integer, nullable=False),
    Column("body", JSON, nullable=False),
    Column("created_at", DateTime, nullable=False),
    Column("created_by", String(64), nullable=True),
    UniqueConstraint("station_id", "version", name="uq_station_rules_version"),
)

inspections = Table(
    "inspections",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("station_id", String(64), ForeignKey("stations.id"), nullable=False),
    Column("part_id", String(128), nullable=True),
    Column("idempotency_key", String(128), nullable=True),
    Column("created_at", DateTime, nullable=False),
    Column("verdict", String(8), nullable=False),
    Column("rule", Text, nullable=False),
    Column("model_name", String(64), nullable=False),
    Column("model_version", String(32), nullable=False),
    Column("rules_version", Integer, nullable=False),
    Column("width", Integer, nullable=False),
    Column("height", Integer, nullable=False),
    Column("image_sha256", String(64), nullable=True),
    Column("image_format", String(8), nullable=True),
    Column("detections", JSON, nullable=False),
    Column("timings", JSON, nullable=False),
    Column("request_id", String(64), nullable=True),
    UniqueConstraint("station_id", "idempotency_key", name="uq_inspections_idempotency"),
    Index("ix_inspections_station_time", "station_id", "created_at"),
    Index("ix_inspections_verdict_time", "verdict", "created_at"),
    Index("ix_inspections_part", "part_id"),
)

# One row per counted box: filters by class and defect rates per class need them as rows.
defects = Table(
    "defects",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("inspection_id", String(32), ForeignKey("inspections.id"), nullable=False, index=True),
    Column("class_name", String(64), nullable=False),
    Column("confidence", Float, nullable=False),
    Index("ix_defects_class", "class_name", "inspection_id"),
)

shadow_results = Table(
    "shadow_results",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("inspection_id", String(32), ForeignKey("inspections.id"), nullable=False, index=True),
    Column("model_name", String(64), nullable=False),
    Column("model_version", String(32), nullable=False),
    Column("verdict", String(8), nullable=False),
    Column("detections", JSON, nullable=False),
    Column("created_at", DateTime, nullable=False),
)

api_keys = Table(
    "api_keys",
    metadata,
    Column("id", String(16), primary_key=True),  # public prefix of the key, for lookup and logs
    Column("secret_hash", String(128), nullable=False),
    Column("role", String(16), nullable=False),
    Column("stations", JSON, nullable=False),
    Column("name", String(128), nullable=False, default=""),
    Column("created_at", DateTime, nullable=False),
    Column("revoked_at", DateTime, nullable=True),
)

# The last heartbeat of each station's agent (inspection/store/stations_health.py): one row per
# station, replaced on every beat; history lives in the agent's log and the metrics.
station_health = Table(
    "station_health",
    metadata,
    Column("station_id", String(64), ForeignKey("stations.id"), primary_key=True),
    Column("last_seen_at", DateTime, nullable=False),
    Column("agent_version", String(32), nullable=False),
    Column("interval_s", Float, nullable=False),
    Column("shift", String(16), nullable=True),
    Column("body", JSON, nullable=False),
)
