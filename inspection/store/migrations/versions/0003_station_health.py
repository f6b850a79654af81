"""Station health: the last heartbeat of each station's agent.

Revision ID: 0003_station_health
Revises: 0002_reviews
"""

import sqlalchemy as sa
from alembic import op

revision = "0003_station_health"
down_revision = "0002_reviews"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "station_health",
        sa.Column("station_id", sa.String(64), sa.ForeignKey("stations.id"), primary_key=True),
        sa.Column("last_seen_at", sa.DateTime, nullable=False),
        sa.Column("agent_version", sa.String(32), nullable=False),
        sa.Column("interval_s", sa.Float, nullable=False),
        sa.Column("shift", sa.String(16), nullable=True),
        sa.Column("body", sa.JSON, nullable=False),
    )


def downgrade() -> None:
    op.drop_table("station_health")
