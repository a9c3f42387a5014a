"""What the LLM clients last saw of each model provider (for /health).

Revision ID: 0006_provider_state
Revises: 0005_edit_tools
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0006_provider_state"
down_revision = "0005_edit_tools"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "provider_state",
        sa.Column("base_url", sa.String(length=500), primary_key=True),
        sa.Column("last_error", sa.String(length=1000), nullable=True),
        sa.Column("last_error_at", sa.DateTime(), nullable=True),
        sa.Column("last_ok_at", sa.DateTime(), nullable=True),
    )


def downgrade() -> None:
    op.drop_table("provider_state")
