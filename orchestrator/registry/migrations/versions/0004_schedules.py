"""Scheduled tasks (`schedule:` submitted to `iacrun server`) and the runs they started.

Revision ID: 0004_schedules
Revises: 0003_accounts
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004_schedules"
down_revision = "0003_accounts"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "schedules",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("spec", sa.Text, nullable=False),  # the RunSpec, JSON
        sa.Column("crons", sa.Text, nullable=False),  # the cron expressions, a JSON list
        sa.Column("submitted_by", sa.Text),
        sa.Column("upload", sa.Text),  # the sha256 of the working folder the server holds
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("next_at", sa.Float, nullable=False),
        sa.Column("last_run_id", sa.Integer),
        sa.Column("stopped_at", sa.Float),
        sa.Column("concurrent", sa.Integer, nullable=False, server_default="0"),
        sqlite_autoincrement=True,
    )
    op.create_index(
        "schedules_active_name",
        "schedules",
        ["name"],
        unique=True,
        sqlite_where=sa.text("stopped_at IS NULL"),
        postgresql_where=sa.text("stopped_at IS NULL"),
    )
    op.create_index(  # the scheduler's look: the earliest due of the active ones
        "schedules_due",
        "schedules",
        ["next_at"],
        sqlite_where=sa.text("stopped_at IS NULL"),
        postgresql_where=sa.text("stopped_at IS NULL"),
    )
    with op.batch_alter_table("runs") as runs:
        runs.add_column(sa.Column("schedule_id", sa.Integer))
    op.create_index("runs_schedule", "runs", ["schedule_id"])


def downgrade() -> None:
    op.drop_index("runs_schedule", "runs")
    with op.batch_alter_table("runs") as runs:
        runs.drop_column("schedule_id")
    op.drop_index("schedules_due", "schedules")
    op.drop_index("schedules_active_name", "schedules")
    op.drop_table("schedules")
