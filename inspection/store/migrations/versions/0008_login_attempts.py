"""Sign-in attempts per typed name, existing or not, counted before the password is checked
(issue 25: parallel guesses raced the per-user counter, and only existing names were ever
locked). users.failed_logins and users.locked_until stay, unused.

Revision ID: 0008_login_attempts
Revises: 0007_products
"""

import sqlalchemy as sa
from alembic import op

revision = "0008_login_attempts"
down_revision = "0007_products"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "login_attempts",
        sa.Column("name", sa.String(64), primary_key=True),
        sa.Column("attempts", sa.Integer, nullable=False),
        sa.Column("locked_until", sa.DateTime, nullable=True),
        sa.Column("last_at", sa.DateTime, nullable=False),
    )
    op.create_index("ix_login_attempts_last_at", "login_attempts", ["last_at"])


def downgrade() -> None:
    op.drop_index("ix_login_attempts_last_at", table_name="login_attempts")
    op.drop_table("login_attempts")
