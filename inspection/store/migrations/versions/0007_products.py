"""Product changeover: product profiles per station, versioned like rules; the station's
current product; on each inspection the product and profile version that judged it; and the
product as a dimension of the count rollups.

`rollup_counts` gains `product` in its primary key. Rollups are derived data (rebuilt bucket
by bucket from the inspections, inspection/store/analytics.py), so the table is dropped and
made again empty: the next refresh (the alarm evaluator's, or any dashboard view) rebuilds
every bucket from the first inspection on, once.

Revision ID: 0007_products
Revises: 0006_station_references
"""

import sqlalchemy as sa
from alembic import op

revision = "0007_products"
down_revision = "0006_station_references"
branch_labels = None
depends_on = None


def _rollup_counts(with_product: bool) -> None:
    columns: list[sa.Column] = [
        sa.Column("station_id", sa.String(64), primary_key=True),
        sa.Column("bucket", sa.DateTime, primary_key=True),
        *([sa.Column("product", sa.String(64), primary_key=True)] if with_product else []),
        sa.Column("model_version", sa.String(96), primary_key=True),
        sa.Column("rules_version", sa.Integer, primary_key=True),
        sa.Column("inspected", sa.Integer, nullable=False),
        sa.Column("failed", sa.Integer, nullable=False),
        sa.Column("review", sa.Integer, nullable=False),
    ]
    op.create_table("rollup_counts", *columns)
    op.create_index("ix_rollup_counts_bucket", "rollup_counts", ["bucket"])


def upgrade() -> None:
    op.create_table(
        "station_products",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("station_id", sa.String(64), sa.ForeignKey("stations.id"), nullable=False),
        sa.Column("product", sa.String(64), nullable=False),
        sa.Column("version", sa.Integer, nullable=False),
        sa.Column("body", sa.JSON, nullable=False),
        sa.Column("created_at", sa.DateTime, nullable=False),
        sa.Column("created_by", sa.String(64), nullable=True),
        sa.UniqueConstraint("station_id", "product", "version", name="uq_station_products_version"),
    )
    with op.batch_alter_table("stations") as batch:
        batch.add_column(sa.Column("product", sa.String(64), nullable=True))
    with op.batch_alter_table("inspections") as batch:
        batch.add_column(sa.Column("product", sa.String(64), nullable=True))
        batch.add_column(sa.Column("product_version", sa.Integer, nullable=True))
    op.drop_index("ix_rollup_counts_bucket", table_name="rollup_counts")
    op.drop_table("rollup_counts")
    _rollup_counts(with_product=True)


def downgrade() -> None:
    op.drop_index("ix_rollup_counts_bucket", table_name="rollup_counts")
    op.drop_table("rollup_counts")
    _rollup_counts(with_product=False)
    with op.batch_alter_table("inspections") as batch:
        batch.drop_column("product_version")
        batch.drop_column("product")
    with op.batch_alter_table("stations") as batch:
        batch.drop_column("product")
    op.drop_table("station_products")
