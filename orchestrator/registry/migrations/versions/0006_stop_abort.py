"""Whether the stop asked of a run is an abort (`iacrun stop -x`: no stop_duration grace),
recorded with the stop so that whoever carries it out (the run's supervisor, a server's pool, a
takeover, the CLI's fallback) kills without the grace, even after the requester exited.

Revision ID: 0006_stop_abort
Revises: 0005_node_hosts
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006_stop_abort"
down_revision = "0005_node_hosts"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("runs") as runs:
        runs.add_column(sa.Column("abort", sa.Integer, nullable=False, server_default="0"))


def downgrade() -> None:
    with op.batch_alter_table("runs") as runs:
        runs.drop_column("abort")
