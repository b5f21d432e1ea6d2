"""Runs and their history (the registry as it was before Alembic: such a database is adopted).

Revision ID: 0001_runs
Revises:
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001_runs"
down_revision = None
branch_labels = None
depends_on = None

ACTIVE = "('pending', 'submitted', 'provisioning', 'running', 'terminating')"


def upgrade() -> None:
    tables = sa.inspect(op.get_bind()).get_table_names()
    if "runs" not in tables:
        op.create_table(
            "runs",
            sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
            sa.Column("name", sa.Text, nullable=False),
            sa.Column("status", sa.Text, nullable=False),
            sa.Column("reason", sa.Text),
            sa.Column("backend", sa.Text),
            sa.Column("region", sa.Text),
            sa.Column("instance_type", sa.Text),
            sa.Column("spot", sa.Integer, nullable=False, server_default="0"),
            sa.Column("price", sa.Float),
            sa.Column("offer", sa.Text),
            sa.Column("host", sa.Text),
            sa.Column("spec", sa.Text, nullable=False),
            sa.Column("stack_name", sa.Text),
            sa.Column("local_dir", sa.Text, nullable=False, server_default=""),
            sa.Column("exit_code", sa.Integer),
            sa.Column("attempt", sa.Integer, nullable=False, server_default="0"),
            sa.Column("supervisor_pid", sa.Integer),
            sa.Column("submitted_at", sa.Float, nullable=False),
            sa.Column("started_at", sa.Float),
            sa.Column("finished_at", sa.Float),
            sqlite_autoincrement=True,
        )
        op.create_index(
            "runs_active_name",
            "runs",
            ["name"],
            unique=True,
            sqlite_where=sa.text(f"status IN {ACTIVE}"),
            postgresql_where=sa.text(f"status IN {ACTIVE}"),
        )
        op.create_index("runs_submitted", "runs", ["submitted_at"])
    if "run_events" in tables:  # the pre-Alembic table, ordered by SQLite's rowid: give it ids
        op.drop_index("run_events_run", "run_events")
        op.rename_table("run_events", "run_events_old")
    op.create_table(
        "run_events",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("run_id", sa.Integer, sa.ForeignKey("runs.id"), nullable=False),
        sa.Column("at", sa.Float, nullable=False),
        sa.Column("status", sa.Text, nullable=False),
        sa.Column("reason", sa.Text),
        sqlite_autoincrement=True,
    )
    op.create_index("run_events_run", "run_events", ["run_id"])
    if "run_events" in tables:
        op.execute(
            "INSERT INTO run_events (run_id, at, status, reason) "
            "SELECT run_id, at, status, reason FROM run_events_old ORDER BY rowid"
        )
        op.drop_table("run_events_old")


def downgrade() -> None:
    op.drop_table("run_events")
    op.drop_table("runs")
