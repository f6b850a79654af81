"""The labeling loop: label_tasks (push queue and labeling status) and jobs (qc loop turns).

Revision ID: 0004_labeling
Revises: 0003_station_health
"""

import sqlalchemy as sa
from alembic import op

revision = "0004_labeling"
down_revision = "0003_station_health"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "label_tasks",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("project", sa.String(128), nullable=False),
        sa.Column("inspection_id", sa.String(32), sa.ForeignKey("inspections.id"), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("reasons", sa.JSON, nullable=False),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("next_attempt_at", sa.DateTime, nullable=False),
        sa.Column("last_error", sa.Text, nullable=True),
        sa.Column("task_id", sa.Integer, nullable=True),
        sa.Column("annotation_id", sa.Integer, nullable=True),
        sa.Column("annotation", sa.JSON, nullable=True),
        sa.Column("annotated_at", sa.String(40), nullable=True),
        sa.Column("dataset_ref", sa.String(128), nullable=True),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.Column("updated_at", sa.DateTime, nullable=False),
        sa.UniqueConstraint("project", "inspection_id", name="uq_label_tasks_inspection"),
    )
    op.create_index("ix_label_tasks_state", "label_tasks", ["state", "next_attempt_at"])
    op.create_index("ix_label_tasks_task", "label_tasks", ["project", "task_id"])
    op.create_table(
        "jobs",
        sa.Column("id", sa.String(32), primary_key=True),
        sa.Column("kind", sa.String(32), nullable=False),
        sa.Column("state", sa.String(16), nullable=False),
        sa.Column("active", sa.String(1), nullable=True),
        sa.Column("step", sa.String(32), nullable=False),
        sa.Column("progress", sa.JSON, nullable=False),
        sa.Column("params", sa.JSON, nullable=False),
        sa.Column("result", sa.JSON, nullable=True),
        sa.Column("error", sa.Text, nullable=True),
        sa.Column("owner", sa.String(128), nullable=True),
        sa.Column("heartbeat_at", sa.DateTime, nullable=True),
        sa.Column("created_by", sa.String(64), nullable=True),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.Column("finished_at", sa.DateTime, nullable=True),
        sa.UniqueConstraint("kind", "active", name="uq_jobs_one_active"),
    )


def downgrade() -> None:
    op.drop_table("jobs")
    op.drop_index("ix_label_tasks_task", "label_tasks")
    op.drop_index("ix_label_tasks_state", "label_tasks")
    op.drop_table("label_tasks")
