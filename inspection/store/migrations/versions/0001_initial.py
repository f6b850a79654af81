"""Initial schema: stations, versioned rules, inspections, defects, shadow results, API keys.

Revision ID: 0001
Revises:
"""

import sqlalchemy as sa
from alembic import op

revision = "0001"
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "stations",
        sa.Column("id", sa.String(64), primary_key=True),
        sa.Column("description", sa.Text, nullable=False),
        sa.Column("rules_version", sa.Integer, nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
    )
    op.create_table(
        "station_rules",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("station_id", sa.String(64), sa.ForeignKey("stations.id"), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("body", sa.JSON, nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.Column("created_by", sa.String(64), nullable=True),
        sa.UniqueConstraint("station_id", "version", name="uq_station_rules_version"),
    )
    op.create_table(
        "inspections",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("station_id", sa.String(64), sa.ForeignKey("stations.id"), nullable=False),
        sa.Column("part_id", sa.String(128), nullable=True),
        sa.Column("idempotency_key", sa.String(128), nullable=True),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.Column("verdict", sa.String(8), nullable=False),
        sa.Column("rule", sa.Text, nullable=False),
        sa.Column("model_name", sa.String(64), nullable=False),
        sa.Column("model_version", sa.String(32), nullable=False),
        sa.Column("rules_version", sa.Integer, nullable=False),
        sa.Column("width", sa.Integer, nullable=False),
        sa.Column("height", sa.Integer, nullable=False),
        sa.Column("image_sha256", sa.String(64), nullable=True),
        sa.Column("image_format", sa.String(8), nullable=True),
        sa.Column("detections", sa.JSON, nullable=False),
        sa.Column("timings", sa.JSON, nullable=False),
        sa.Column("request_id", sa.String(64), nullable=True),
        sa.UniqueConstraint("station_id", "idempotency_key", name="uq_inspections_idempotency"),
    )
    op.create_index("ix_inspections_station_time", "inspections", ["station_id", "created_at"])
    op.create_index("ix_inspections_verdict_time", "inspections", ["verdict", "created_at"])
    op.create_index("ix_inspections_part", "inspections", ["part_id"])
    op.create_table(
        "defects",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("inspection_id", sa.String(32), sa.ForeignKey("inspections.id"), nullable=False),
        sa.Column("class_name", sa.String(64), nullable=False),
        sa.Column("confidence", sa.Float, nullable=False),
    )
    op.create_index("ix_defects_inspection_id", "defects", ["inspection_id"])
    op.create_index("ix_defects_class", "defects", ["class_name", "inspection_id"])
    op.create_table(
        "shadow_results",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("inspection_id", sa.String(32), sa.ForeignKey("inspections.id"), nullable=False),
        sa.Column("model_name", sa.String(64), nullable=False),
        sa.Column("model_version", sa.String(32), nullable=False),
        sa.Column("verdict", sa.String(8), nullable=False),
        sa.Column("detections", sa.JSON, nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
    )
    op.create_index("ix_shadow_results_inspection_id", "shadow_results", ["inspection_id"])
    op.create_table(
        "api_keys",
        sa.Column("id", sa.String(16), primary_key=True),
        sa.Column("secret_hash", sa.String(128), nullable=False),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("stations", sa.JSON, nullable=False),
        sa.Column("name", sa.String(128), nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.Column("revoked_at", sa.DateTime, nullable=True),
    )


def downgrade() -> None:
    for table in ("api_keys", "shadow_results", "defects", "inspections", "station_rules", "stations"):
        op.drop_table(table)
