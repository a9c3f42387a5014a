"""Checkpoints as appended messages: one row per message of a task's conversation.

Revision ID: 0011_checkpoint_deltas
Revises: 0010_chaos
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0011_checkpoint_deltas"
down_revision = "0010_chaos"
branch_labels = None
depends_on = None


def upgrade() -> None:
    # NULL: a checkpoint written before, whose messages are still in task_checkpoint.messages
    with op.batch_alter_table("task_checkpoint") as batch:
        batch.add_column(sa.Column("message_count", sa.Integer(), nullable=True))
    op.create_table(
        "task_checkpoint_message",
        sa.Column("task_id", sa.Integer(), sa.ForeignKey("task.id"), primary_key=True),
        sa.Column("idx", sa.Integer(), primary_key=True),
        sa.Column("message", sa.JSON(), nullable=True),
    )


def downgrade() -> None:
    op.drop_table("task_checkpoint_message")
    with op.batch_alter_table("task_checkpoint") as batch:
        batch.drop_column("message_count")
