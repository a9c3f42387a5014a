"""The tool-call journal: intent rows written before a tool's effect (app.run.journal).

Revision ID: 0007_tool_intents
Revises: 0006_provider_state
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlmodel.sql.sqltypes import UTCDateTime

revision = "0007_tool_intents"
down_revision = "0006_provider_state"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "tool_intent",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("task_id", sa.Integer(), sa.ForeignKey("task.id"), nullable=False),
        sa.Column("key", sa.String(length=120), nullable=False),
        sa.Column("tool", sa.String(length=100), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("args", sa.JSON(), nullable=True),
        sa.Column("reply", sa.JSON(), nullable=True),
        sa.Column("before", sa.JSON(), nullable=True),
        sa.Column("status", sa.String(length=16), nullable=False),
        sa.Column("result", sa.JSON(), nullable=True),
        sa.Column("settled", sa.Boolean(), nullable=False),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.UniqueConstraint("key", name="uq_tool_intent_key"),
    )
    op.create_index("ix_tool_intent_task_id", "tool_intent", ["task_id"])


def downgrade() -> None:
    op.drop_index("ix_tool_intent_task_id", table_name="tool_intent")
    op.drop_table("tool_intent")
