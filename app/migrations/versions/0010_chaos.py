"""What a run was doing when its lease was last renewed, the deliveries that died in a tool, and
deliverables still owed by an ended task.

Revision ID: 0010_chaos
Revises: 0009_characters
"""

from __future__ import annotations

import sqlalchemy as sa
import sqlmodel
from alembic import op

revision = "0010_chaos"
down_revision = "0009_characters"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("task") as batch:
        batch.add_column(sa.Column("lease_activity", sqlmodel.sql.sqltypes.AutoString(length=64),
                                   nullable=True))
        batch.add_column(sa.Column("tool_deaths", sa.Integer(), nullable=False,
                                   server_default="0"))
        batch.add_column(sa.Column("delivery_due_at", sqlmodel.sql.sqltypes.UTCDateTime(),
                                   nullable=True))
    op.create_index("ix_task_delivery_due_at", "task", ["delivery_due_at"])


def downgrade() -> None:
    op.drop_index("ix_task_delivery_due_at", table_name="task")
    with op.batch_alter_table("task") as batch:
        batch.drop_column("delivery_due_at")
        batch.drop_column("tool_deaths")
        batch.drop_column("lease_activity")
