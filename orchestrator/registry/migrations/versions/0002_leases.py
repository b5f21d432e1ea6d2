"""Leases: which server supervises a run, and until when (two servers on one database never
supervise one run twice; a server that died loses its runs to another when the lease expires).

Revision ID: 0002_leases
Revises: 0001_runs
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0002_leases"
down_revision = "0001_runs"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("runs") as batch:
        batch.add_column(sa.Column("lease_owner", sa.Text))
        batch.add_column(sa.Column("lease_expires", sa.Float))
    op.create_index(
        "runs_leased",
        "runs",
        ["lease_owner"],
        sqlite_where=sa.text("lease_owner IS NOT NULL"),
        postgresql_where=sa.text("lease_owner IS NOT NULL"),
    )


def downgrade() -> None:
    op.drop_index("runs_leased", "runs")
    with op.batch_alter_table("runs") as batch:
        batch.drop_column("lease_expires")
        batch.drop_column("lease_owner")
