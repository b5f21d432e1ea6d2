"""Accounts of a server: users, their API tokens (only a hash of each), and who submitted a run.

Revision ID: 0003_accounts
Revises: 0002_leases (re-chained onto 0002_leases when that lands)
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003_accounts"
down_revision = "0002_leases"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "users",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("name", sa.Text, nullable=False, unique=True),
        sa.Column("role", sa.Text, nullable=False),
        sa.Column("created_at", sa.Float, nullable=False),
        sqlite_autoincrement=True,
    )
    op.create_table(
        "tokens",
        sa.Column("id", sa.Integer, primary_key=True, autoincrement=True),
        sa.Column("user_id", sa.Integer, sa.ForeignKey("users.id"), nullable=False),
        sa.Column("name", sa.Text, nullable=False),
        sa.Column("hash", sa.Text, nullable=False, unique=True),
        sa.Column("created_at", sa.Float, nullable=False),
        sa.Column("expires_at", sa.Float),
        sa.Column("revoked_at", sa.Float),
        sa.Column("last_used_at", sa.Float),
        sqlite_autoincrement=True,
    )
    op.create_index("tokens_user", "tokens", ["user_id"])
    with op.batch_alter_table("runs") as batch:
        batch.add_column(sa.Column("submitted_by", sa.Text))
    op.create_index("runs_submitted_by", "runs", ["submitted_by"])


def downgrade() -> None:
    op.drop_index("runs_submitted_by", "runs")
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("submitted_by")
    op.drop_table("tokens")
    op.drop_table("users")
