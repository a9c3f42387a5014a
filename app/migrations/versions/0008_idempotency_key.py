"""Idempotency-Key on task creation: the key a client sent, and a hash of what it sent with it.

Revision ID: 0008_idempotency_key
Revises: 0007_tool_intents
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0008_idempotency_key"
down_revision = "0007_tool_intents"
branch_labels = None
depends_on = None


def upgrade() -> None:
    with op.batch_alter_table("task") as batch:
        batch.add_column(sa.Column("idempotency_key", sa.String(length=200), nullable=True))
        batch.add_column(sa.Column("request_hash", sa.String(length=64), nullable=True))
    op.create_index("uq_task_owner_idempotency_key", "task", ["owner_id", "idempotency_key"],
                    unique=True)


def downgrade() -> None:
    op.drop_index("uq_task_owner_idempotency_key", table_name="task")
    with op.batch_alter_table("task") as batch:
        batch.drop_column("request_hash")
        batch.drop_column("idempotency_key")
