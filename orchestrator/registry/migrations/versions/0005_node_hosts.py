"""The ssh hosts a multi-node run holds, claimed in one transaction before any is used.

Revision ID: 0005_node_hosts
Revises: 0004_schedules
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0005_node_hosts"
down_revision = "0004_schedules"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("runs") as runs:
        runs.add_column(sa.Column("node_hosts", sa.Text))  # a JSON list, see Registry.claim_hosts


def downgrade() -> None:
    with op.batch_alter_table("runs") as runs:
        runs.drop_column("node_hosts")
