"""Plant analytics: per-frame image statistics and model confidence on each inspection,
15-minute rollups of counts per station and per class, frozen SPC limits, and alarms.

Revision ID: 0005_analytics
Revises: 0004_labeling
"""

import sqlalchemy as sa
from alembic import op

revision = "0005_analytics"
down_revision = "0004_labeling"
branch_labels = None
depends_on = None

FRAME_COLUMNS = ("brightness", "contrast", "sharpness", "blue", "green", "red", "max_confidence")


def upgrade() -> None:
    # batch_alter_table: SQLite cannot add several columns in one ALTER; it adds them one by one
    # without a table copy since they are nullable.
    with op.batch_alter_table("inspections") as batch:
        for name in FRAME_COLUMNS:
            batch.add_column(sa.Column(name, sa.Float, nullable=True))
    op.create_index("ix_inspections_time", "inspections", ["created_at"])
    op.create_table(
        "rollup_counts",
        sa.Column("station_id", sa.String(64), primary_key=True),
        sa.Column("bucket", sa.DateTime, primary_key=True),
        sa.Column("model_version", sa.String(96), primary_key=True),
        sa.Column("rules_version", sa.Integer, primary_key=True),
        sa.Column("inspected", sa.Integer, nullable=False),
        sa.Column("failed", sa.Integer, nullable=False),
        sa.Column("review", sa.Integer, nullable=False),
    )
    op.create_index("ix_rollup_counts_bucket", "rollup_counts", ["bucket"])
    op.create_table(
        "rollup_classes",
        sa.Column("station_id", sa.String(64), primary_key=True),
        sa.Column("bucket", sa.DateTime, primary_key=True),
        sa.Column("class_name", sa.String(64), primary_key=True),
        sa.Column("failed", sa.Integer, nullable=False),
        sa.Column("defects", sa.Integer, nullable=False),
    )
    op.create_index("ix_rollup_classes_bucket", "rollup_classes", ["bucket"])
    op.create_table(
        "spc_limits",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("station_id", sa.String(64), sa.ForeignKey("stations.id"), nullable=False),
        sa.Column("class_name", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(4), nullable=False),
        sa.Column("limits", sa.JSON, nullable=False),
        sa.Column("subgroup_size", sa.Integer, nullable=False),
        sa.Column("baseline_from", sa.DateTime, nullable=False),
        sa.Column("baseline_to", sa.DateTime, nullable=False),
        sa.Column("frozen_by", sa.String(64), nullable=False),
        sa.Column("frozen_at", sa.DateTime, nullable=False),
    )
    op.create_index("ix_spc_limits_station", "spc_limits", ["station_id", "class_name", "kind", "id"])
    op.create_table(
        "alarms",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("station_id", sa.String(64), nullable=False),
        sa.Column("class_name", sa.String(64), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("rule", sa.String(32), nullable=False),
        sa.Column("side", sa.String(8), nullable=True),
        sa.Column("message", sa.Text, nullable=False),
        sa.Column("raised_at", sa.DateTime, nullable=False),
        sa.Column("since", sa.DateTime, nullable=True),
        sa.Column("cleared_at", sa.DateTime, nullable=True),
        sa.Column("active_key", sa.String(200), nullable=True),
        sa.Column("acknowledged_by", sa.String(64), nullable=True),
        sa.Column("acknowledged_at", sa.DateTime, nullable=True),
        sa.Column("note", sa.Text, nullable=False),
        sa.UniqueConstraint("active_key", name="uq_alarms_active"),
    )
    op.create_index("ix_alarms_time", "alarms", ["raised_at"])


def downgrade() -> None:
    for table in ("alarms", "spc_limits", "rollup_classes", "rollup_counts"):
        op.drop_table(table)
    op.drop_index("ix_inspections_time", table_name="inspections")
    with op.batch_alter_table("inspections") as batch:
        for name in reversed(FRAME_COLUMNS):
            batch.drop_column(name)
