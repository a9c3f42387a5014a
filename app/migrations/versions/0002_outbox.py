"""The email outbox.

Revision ID: 0002_outbox
Revises: 0001
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlmodel.sql.sqltypes import UTCDateTime

revision = "0002_outbox"
down_revision = "0001"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "outbox_message",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("task_id", sa.Integer(), sa.ForeignKey("task.id"), nullable=False),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("recipient", sa.String(length=320), nullable=False),
        sa.Column("message_id", sa.String(length=255), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("attempts", sa.Integer(), nullable=False),
        sa.Column("next_attempt_at", UTCDateTime(), nullable=False),
        sa.Column("lease_until", UTCDateTime(), nullable=True),
        sa.Column("claimed_by", sa.String(length=100), nullable=True),
        sa.Column("last_error", sa.String(length=2000), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.Column("sent_at", UTCDateTime(), nullable=True),
        sa.UniqueConstraint("message_id", name="uq_outbox_message_message_id"),
    )
    op.create_index("ix_outbox_message_task_id", "outbox_message", ["task_id"])
    op.create_index("ix_outbox_message_status", "outbox_message", ["status"])
    op.create_index("ix_outbox_message_next_attempt_at", "outbox_message", ["next_attempt_at"])


def downgrade() -> None:
    op.drop_index("ix_outbox_message_next_attempt_at", table_name="outbox_message")
    op.drop_index("ix_outbox_message_status", table_name="outbox_message")
    op.drop_index("ix_outbox_message_task_id", table_name="outbox_message")
    op.drop_table("outbox_message")
