"""Templates stored in the database (scenarios and agents).

Revision ID: 0004_templates
Revises: 0002_outbox
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0004_templates"
down_revision = "0002_outbox"
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table(
        "template_record",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("type", sa.String(length=16), nullable=False),
        sa.Column("name", sa.String(length=100), nullable=False),
        sa.Column("body", sa.JSON(), nullable=True),
        sa.Column("owner_id", sa.Integer(), sa.ForeignKey("user.id"), nullable=True),
        sa.Column("created_at", sa.DateTime(), nullable=False),
        sa.Column("updated_at", sa.DateTime(), nullable=False),
        sa.UniqueConstraint("type", "name", name="uq_template_record_type_name"),
    )
    op.create_index("ix_template_record_type", "template_record", ["type"])
    op.create_index("ix_template_record_owner_id", "template_record", ["owner_id"])


def downgrade() -> None:
    op.drop_index("ix_template_record_owner_id", table_name="template_record")
    op.drop_index("ix_template_record_type", table_name="template_record")
    op.drop_table("template_record")
