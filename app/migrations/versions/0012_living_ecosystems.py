"""Living ecosystems: an ecosystem runs in rounds under a daily budget (issue 16).

Revision ID: 0012_living_ecosystems
Revises: 0011_checkpoint_deltas
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlmodel.sql.sqltypes import UTCDateTime

revision = "0012_living_ecosystems"
down_revision = "0011_checkpoint_deltas"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("ecosystem") as batch:
        batch.add_column(sa.Column("living_status", sa.String(length=8), nullable=False,
                                   server_default="off"))
        batch.add_column(sa.Column("living_next_at", UTCDateTime(), nullable=True))
        batch.add_column(sa.Column("living_task_id", sa.Integer(), nullable=True))
        batch.add_column(sa.Column("living", sa.JSON(), nullable=True))
        batch.add_column(sa.Column("living_version", sa.Integer(), nullable=False,
                                   server_default="0"))
    op.create_index("ix_ecosystem_living_status", "ecosystem", ["living_status"])


def downgrade() -> None:
    op.drop_index("ix_ecosystem_living_status", table_name="ecosystem")
    with op.batch_alter_table("ecosystem") as batch:
        batch.drop_column("living_version")
        batch.drop_column("living")
        batch.drop_column("living_task_id")
        batch.drop_column("living_next_at")
        batch.drop_column("living_status")
