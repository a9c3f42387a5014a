"""Persistent characters, ecosystems and memories.

Revision ID: 0009_characters
Revises: 0008_idempotency_key
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op
from sqlmodel.sql.sqltypes import UTCDateTime

revision = "0009_characters"
down_revision = "0008_idempotency_key"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "character",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("owner_id", sa.Integer(), sa.ForeignKey("user.id"), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("persona", sa.String(), nullable=False),
        sa.Column("traits", sa.JSON(), nullable=True),
        sa.Column("goals", sa.JSON(), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.UniqueConstraint("owner_id", "name", name="uq_character_owner_name"),
    )
    op.create_index("ix_character_owner_id", "character", ["owner_id"])
    op.create_table(
        "ecosystem",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("owner_id", sa.Integer(), sa.ForeignKey("user.id"), nullable=False),
        sa.Column("name", sa.String(length=64), nullable=False),
        sa.Column("character_ids", sa.JSON(), nullable=True),
        sa.Column("relationships", sa.JSON(), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
        sa.Column("updated_at", UTCDateTime(), nullable=False),
        sa.UniqueConstraint("owner_id", "name", name="uq_ecosystem_owner_name"),
    )
    op.create_index("ix_ecosystem_owner_id", "ecosystem", ["owner_id"])
    op.create_table(
        "memory",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("character_id", sa.Integer(), sa.ForeignKey("character.id"), nullable=False),
        sa.Column("task_id", sa.Integer(), sa.ForeignKey("task.id"), nullable=True),
        sa.Column("kind", sa.String(length=16), nullable=False),
        sa.Column("content", sa.String(length=2000), nullable=False),
        sa.Column("importance", sa.Float(), nullable=False),
        sa.Column("embedding", sa.JSON(), nullable=True),
        sa.Column("created_at", UTCDateTime(), nullable=False),
    )
    op.create_index("ix_memory_character_id", "memory", ["character_id"])
    op.create_index("ix_memory_task_id", "memory", ["task_id"])
    op.create_index("ix_memory_created_at", "memory", ["created_at"])


def downgrade() -> None:
    op.drop_table("memory")
    op.drop_table("ecosystem")
    op.drop_table("character")
