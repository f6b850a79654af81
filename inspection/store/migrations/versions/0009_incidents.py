"""Incidents: the alarms that fire together at a station grouped into one, acknowledged once,
and each alarm's text as a template and values, shown in the reader's language (issue 26).

Alarms stored before become one incident each (acknowledged as they were; open while they
hold), so the dashboard's incident list still shows them.

Revision ID: 0009_incidents
Revises: 0008_login_attempts
"""

import sqlalchemy as sa
from alembic import op

revision = "0009_incidents"
down_revision = "0008_login_attempts"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "incidents",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("station_id", sa.String(64), nullable=False),
        sa.Column("opened_at", sa.DateTime, nullable=False),
        sa.Column("closed_at", sa.DateTime, nullable=True),
        sa.Column("active_key", sa.String(64), nullable=True),
        sa.Column("acknowledged_by", sa.String(64), nullable=True),
        sa.Column("acknowledged_at", sa.DateTime, nullable=True),
        sa.Column("note", sa.Text, nullable=False),
        sa.UniqueConstraint("active_key", name="uq_incidents_active"),
    )
    op.create_index("ix_incidents_time", "incidents", ["opened_at"])
    # Nullable columns: SQLite adds them in place, one ALTER each.
    with op.batch_alter_table("alarms") as batch:
        batch.add_column(sa.Column("incident_id", sa.Integer, nullable=True))
        batch.add_column(sa.Column("phrase", sa.Text, nullable=True))
    op.create_index("ix_alarms_incident", "alarms", ["incident_id"])
    # One incident per earlier alarm, numbered as the alarm; the open ones keyed by the alarm's
    # own key, so no two collide (new incidents are keyed by the station alone).
    op.execute("INSERT INTO incidents (id, station_id, opened_at, closed_at, active_key, acknowledged_by, "
               "acknowledged_at, note) SELECT id, station_id, raised_at, cleared_at, "
               "CASE WHEN active_key IS NULL THEN NULL ELSE 'alarm:' || CAST(id AS VARCHAR(20)) END, "
               "acknowledged_by, acknowledged_at, note FROM alarms")
    op.execute("UPDATE alarms SET incident_id = id")
    if op.get_bind().dialect.name == "postgresql":  # rows given their ids: move the sequence past them
        op.execute("SELECT setval(pg_get_serial_sequence('incidents', 'id'), "
                   "COALESCE((SELECT MAX(id) FROM incidents), 0) + 1, false)")


def downgrade() -> None:
    op.drop_index("ix_alarms_incident", table_name="alarms")
    with op.batch_alter_table("alarms") as batch:
        batch.drop_column("phrase")
        batch.drop_column("incident_id")
    op.drop_index("ix_incidents_time", table_name="incidents")
    op.drop_table("incidents")
