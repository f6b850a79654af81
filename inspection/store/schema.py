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

from inspection.analytics.image_stats import Statistic

metadata = MetaData()

# The largest integer SQLite's INTEGER and PostgreSQL's BIGINT hold: a client's number beyond
# it must be refused before a query (OverflowError / DataError would be a 500, issue 25).
SQL_INT_MAX = 2**63 - 1

# The per-frame figures stored with each inspection: the image statistics, declared once as
# `inspection.analytics.image_stats.Statistic` (in its order), then the model's best confidence.
# (Migrations keep their own frozen copy: a later statistic is a new migration.)
MAX_CONFIDENCE = "max_confidence"
FRAME_COLUMNS = (*(statistic.value for statistic in Statistic), MAX_CONFIDENCE)

stations = Table(
    "stations",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("description", Text, nullable=False, default=""),
    Column("rules_version", Integer, nullable=False),
    Column("created_at", DateTime, nullable=False),
    # The station's golden part, if it has one (migration 0006_station_references).
    Column("reference_version", Integer, nullable=True),
    # The product on the line now (migration 0007_products): frames posted without a product
    # are judged with its profile; NULL: the station's own rules.
    Column("product", String(64), nullable=True),
)

# Product profiles per station, versioned like rules: a new profile of a product is a new row,
# the newest version of a (station, product) is in force (migration 0007_products).
station_products = Table(
    "station_products",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("station_id", String(64), ForeignKey("stations.id"), nullable=False),
    Column("product", String(64), nullable=False),
    Column("version", Integer, nullable=False),
    Column("body", JSON, nullable=False),  # inspection.products.ProductProfile
    Column("created_at", DateTime, nullable=False),
    Column("created_by", String(64), nullable=True),
    UniqueConstraint("station_id", "product", "version", name="uq_station_products_version"),
)

# A station's reference images, versioned like its rules: the image itself lies in the image
# store under its sha256 (migration 0006_station_references).
station_references = Table(
    "station_references",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("station_id", String(64), ForeignKey("stations.id"), nullable=False),
    Column("version", Integer, nullable=False),
    Column("image_sha256", String(64), nullable=False),
    Column("image_format", String(8), nullable=False),
    Column("width", Integer, nullable=False),
    Column("height", Integer, nullable=False),
    Column("created_at", DateTime, nullable=False),
    Column("created_by", String(64), nullable=True),
    UniqueConstraint("station_id", "version", name="uq_station_references_version"),
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
    # Per-frame image statistics and the model's highest box confidence (migration
    # 0005_analytics; inspection/analytics/image_stats.py): what drift alarms compare.
    *(Column(name, Float, nullable=True) for name in FRAME_COLUMNS),
    # Reference inspection (migration 0006_station_references): the reference version judged
    # against, the phase-correlation response and the shift applied, in frame pixels.
    Column("reference_version", Integer, nullable=True),
    Column("alignment_score", Float, nullable=True),
    Column("alignment_shift", Float, nullable=True),
    # The product judged and its profile version (migration 0007_products); NULL: none.
    Column("product", String(64), nullable=True),
    Column("product_version", Integer, nullable=True),
    UniqueConstraint("station_id", "idempotency_key", name="uq_inspections_idempotency"),
    Index("ix_inspections_station_time", "station_id", "created_at"),
    Index("ix_inspections_verdict_time", "verdict", "created_at"),
    Index("ix_inspections_part", "part_id"),
    # The rollups' refresh reads the newest minutes of every station (migration 0005_analytics).
    Index("ix_inspections_time", "created_at"),
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

# -- people and their review decisions (migration 0002_reviews) ----------------------------

users = Table(
    "users",
    metadata,
    Column("name", String(64), primary_key=True),  # what a person types to sign in
    Column("display_name", String(128), nullable=False),
    Column("role", String(16), nullable=False),  # a staff Role: reviewer, engineer, admin
    Column("password_hash", String(256), nullable=False),  # argon2id, salt and parameters inside
    Column("created_at", DateTime, nullable=False),
    Column("disabled_at", DateTime, nullable=True),
    Column("failed_logins", Integer, nullable=False, default=0),  # since the last success
    Column("locked_until", DateTime, nullable=True),  # login throttling after repeated failures
)

# Sign-in attempts per typed name, whether or not a user has it (migration 0008_login_attempts):
# a lock that only existing names get tells which names exist (issue 25). `attempts` is
# counted before the password is checked, in one statement, so parallel guesses cannot all
# pass before the first failure is written. (users.failed_logins and locked_until, the first
# place for this, are no longer used.)
login_attempts = Table(
    "login_attempts",
    metadata,
    Column("name", String(64), primary_key=True),
    Column("attempts", Integer, nullable=False),  # since the last success
    Column("locked_until", DateTime, nullable=True),
    Column("last_at", DateTime, nullable=False, index=True),  # for tidying forgotten names
)

# A session is stored (not a signed cookie) so that sign-out, disabling a user and expiry take
# effect at once in every worker; the cookie holds a random token whose sha256 is the id.
sessions = Table(
    "sessions",
    metadata,
    Column("id", String(64), primary_key=True),
    Column("user_name", String(64), ForeignKey("users.name"), nullable=False, index=True),
    Column("csrf", String(64), nullable=False),
    Column("created_at", DateTime, nullable=False),
    Column("last_seen", DateTime, nullable=False),
    Column("expires_at", DateTime, nullable=False),
)

# Append-only: a new decision on an inspection is a new row; the newest row is the current
# judgement and the older rows are the audit trail. Nothing updates or deletes a row.
reviews = Table(
    "reviews",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("inspection_id", String(32), ForeignKey("inspections.id"), nullable=False),
    Column("reviewer", String(64), nullable=False),  # a user's name, or "key:<id>" for an API key
    Column("created_at", DateTime, nullable=False),
    Column("decision", String(16), nullable=False),  # FrameDecision
    Column("disposition", String(16), nullable=True),  # Disposition of the part
    Column("boxes", JSON, nullable=False),  # [BoxCorrection.to_json()], image pixels
    Column("note", Text, nullable=False, default=""),
    Column("model_verdict", String(8), nullable=False),  # the verdict reviewed, for agreement
    Column("client_id", String(64), nullable=True),  # the page's id for a decision: retries are idempotent
    UniqueConstraint("reviewer", "client_id", name="uq_reviews_client"),
    Index("ix_reviews_inspection", "inspection_id", "id"),
    Index("ix_reviews_time", "created_at"),
)

# -- plant analytics (migration 0005_analytics) ----------------------------------------------

# Inspections counted per station, 15-minute UTC bucket, product ("" for none; migration
# 0007_products) and model/rules version: the dashboard
# reads these instead of scanning every inspection (bench/analytics/store.py measures both).
# 15 minutes because every plant zone's offset is a multiple of it, so shifts starting on a
# quarter hour local time are whole buckets. Rebuilt bucket by bucket (AnalyticsStore.refresh).
rollup_counts = Table(
    "rollup_counts",
    metadata,
    Column("station_id", String(64), primary_key=True),
    Column("bucket", DateTime, primary_key=True),  # naive UTC start of the 15 minutes
    Column("product", String(64), primary_key=True),  # "" for frames judged without a product
    Column("model_version", String(96), primary_key=True),  # "name@version"
    Column("rules_version", Integer, primary_key=True),
    Column("inspected", Integer, nullable=False),
    Column("failed", Integer, nullable=False),
    Column("review", Integer, nullable=False),
    Index("ix_rollup_counts_bucket", "bucket"),
)

# Failed parts per class in the same buckets: a part failed "with" every class it had a box of.
rollup_classes = Table(
    "rollup_classes",
    metadata,
    Column("station_id", String(64), primary_key=True),
    Column("bucket", DateTime, primary_key=True),
    Column("class_name", String(64), primary_key=True),
    Column("failed", Integer, nullable=False),
    Column("defects", Integer, nullable=False),  # counted boxes on those parts (u-chart)
    Index("ix_rollup_classes_bucket", "bucket"),
)

# Frozen SPC limits and the drift reference window, per station and class ("" = all classes).
# A new freeze is a new row; the newest row of a (station, class) is in force.
spc_limits = Table(
    "spc_limits",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("station_id", String(64), ForeignKey("stations.id"), nullable=False),
    Column("class_name", String(64), nullable=False),
    Column("kind", String(4), nullable=False),  # ChartKind: p or u
    Column("limits", JSON, nullable=False),  # Limits.to_dict()
    Column("subgroup_size", Integer, nullable=False),
    Column("baseline_from", DateTime, nullable=False),
    Column("baseline_to", DateTime, nullable=False),
    Column("frozen_by", String(64), nullable=False),
    Column("frozen_at", DateTime, nullable=False),
    Index("ix_spc_limits_station", "station_id", "class_name", "kind", "id"),
)

# SPC and equipment alarms. `active_key` ("station|class|rule") is set while the condition
# holds and cleared (NULL) when it ends: its unique constraint is what keeps a condition from
# being stored twice, even by two service processes at once.
alarms = Table(
    "alarms",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("station_id", String(64), nullable=False),
    Column("class_name", String(64), nullable=False),  # "" for the station as a whole
    Column("kind", String(16), nullable=False),  # AlarmKind: spc, equipment, model
    Column("rule", String(32), nullable=False),  # WE1..TREND, EWMA, CUSUM, or drift:<statistic>
    Column("side", String(8), nullable=True),
    Column("message", Text, nullable=False),
    Column("raised_at", DateTime, nullable=False),
    Column("since", DateTime, nullable=True),  # when the change began, as far as it is known
    Column("cleared_at", DateTime, nullable=True),
    Column("active_key", String(200), nullable=True),
    Column("acknowledged_by", String(64), nullable=True),
    Column("acknowledged_at", DateTime, nullable=True),
    Column("note", Text, nullable=False, default=""),
    # The incident it belongs to (migration 0009_incidents; inspection/store/incidents.py), and
    # its text as a template and values (inspection/analytics/phrases.py), so each reader gets
    # it in their language; NULL for an alarm stored before.
    Column("incident_id", Integer, nullable=True),
    Column("phrase", Text, nullable=True),
    UniqueConstraint("active_key", name="uq_alarms_active"),
    Index("ix_alarms_time", "raised_at"),
    Index("ix_alarms_incident", "incident_id"),
)

# Incidents: the alarms that fire together at a station, one problem acknowledged once
# (migration 0009_incidents). `active_key` (the station) is set while any of its alarms holds;
# its unique constraint keeps one open incident per station, across service processes too.
incidents = Table(
    "incidents",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("station_id", String(64), nullable=False),
    Column("opened_at", DateTime, nullable=False),
    Column("closed_at", DateTime, nullable=True),
    Column("active_key", String(64), nullable=True),
    Column("acknowledged_by", String(64), nullable=True),
    Column("acknowledged_at", DateTime, nullable=True),
    Column("note", Text, nullable=False, default=""),
    UniqueConstraint("active_key", name="uq_incidents_active"),
    Index("ix_incidents_time", "opened_at"),
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

# -- the labeling loop (migration 0004_labeling) -------------------------------------------

# One row per inspection sent (or to be sent) to a Label Studio project: the durable push
# queue and the frame's labeling status at once. queued -> sending -> pushed -> labelled ->
# pulled; a later annotation of a pulled task makes it labelled again. The unique
# (project, inspection) pair is what makes a repeated push create no second task.
label_tasks = Table(
    "label_tasks",
    metadata,
    Column("id", Integer, primary_key=True, autoincrement=True),
    Column("project", String(128), nullable=False),  # Label Studio project title
    Column("inspection_id", String(32), ForeignKey("inspections.id"), nullable=False),
    Column("state", String(16), nullable=False),  # LabelState
    Column("reasons", JSON, nullable=False),  # why it was chosen: [{"reason": ..., ...}]
    Column("attempts", Integer, nullable=False, default=0),
    Column("next_attempt_at", DateTime, nullable=False),
    Column("last_error", Text, nullable=True),
    Column("task_id", Integer, nullable=True),  # Label Studio's task id, once pushed
    Column("annotation_id", Integer, nullable=True),
    Column("annotation", JSON, nullable=True),  # the chosen annotation's result list
    Column("annotated_at", String(40), nullable=True),  # Label Studio's updated_at of it
    Column("dataset_ref", String(128), nullable=True),  # the version it was pulled into
    Column("created_at", DateTime, nullable=False),
    Column("updated_at", DateTime, nullable=False),
    UniqueConstraint("project", "inspection_id", name="uq_label_tasks_inspection"),
    Index("ix_label_tasks_state", "state", "next_attempt_at"),
    Index("ix_label_tasks_task", "project", "task_id"),
)

# Long work (a `qc loop` turn) as a row: its step, progress and result survive a restart of
# the process that runs it. `active` holds "1" while a job of the kind runs or waits and NULL
# once it ended: the unique (kind, active) pair lets only one run at a time, on SQLite and
# PostgreSQL alike (both allow any number of NULLs in a unique constraint).
jobs = Table(
    "jobs",
    metadata,
    Column("id", String(32), primary_key=True),
    Column("kind", String(32), nullable=False),
    Column("state", String(16), nullable=False),  # JobState
    Column("active", String(1), nullable=True),
    Column("step", String(32), nullable=False),
    Column("progress", JSON, nullable=False),  # {"message": ..., "steps": {step: outputs}}
    Column("params", JSON, nullable=False),
    Column("result", JSON, nullable=True),
    Column("error", Text, nullable=True),
    Column("owner", String(128), nullable=True),  # host:pid of the process running it
    Column("heartbeat_at", DateTime, nullable=True),
    Column("created_by", String(64), nullable=True),
    Column("created_at", DateTime, nullable=False),
    Column("finished_at", DateTime, nullable=True),
    UniqueConstraint("kind", "active", name="uq_jobs_one_active"),
)
