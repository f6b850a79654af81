"""Reference-image inspection: each station's golden part, versioned like its rules, and on
each inspection the reference version it was judged against with how well the frame aligned.

Revision ID: 0006_station_references
Revises: 0005_analytics
"""

import sqlalchemy as sa
from alembic import op

revision = "0006_station_references"
down_revision = "0005_analytics"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "station_references",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("station_id", sa.String(64), sa.ForeignKey("stations.id"), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("image_sha256", sa.String(64), nullable=False),
        sa.Column("image_format", sa.String(8), nullable=False),
        sa.Column("width", sa.Integer, nullable=False),
        sa.Column("height", sa.Integer, nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.Column("created_by", sa.String(64), nullable=True),
        sa.UniqueConstraint("station_id", "version", name="uq_station_references_version"),
    )
    with op.batch_alter_table("stations") as batch:
        batch.add_column(sa.Column("reference_version", sa.Integer, nullable=True))
    with op.batch_alter_table("inspections") as batch:
        batch.add_column(sa.Column("reference_version", sa.Integer, nullable=True))
        # Phase-correlation response (1 = the frame matches its reference exactly) and the
        # shift applied, in frame pixels: what alignment drift trends read.
        batch.add_column(sa.Column("alignment_score", sa.Float, nullable=True))
        batch.add_column(sa.Column("alignment_shift", sa.Float, nullable=True))


def downgrade() -> None:
    with op.batch_alter_table("inspections") as batch:
        batch.drop_column("alignment_shift")
        batch.drop_column("alignment_score")
        batch.drop_column("reference_version")
    with op.batch_alter_table("stations") as batch:
        batch.drop_column("reference_version")
    op.drop_table("station_references")
