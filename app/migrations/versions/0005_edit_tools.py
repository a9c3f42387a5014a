"""Give agents that may write files the editing tools (view_file, edit_file, insert_lines,
undo_edit), as the shipped agent templates now do; agents seeded earlier keep their rows.

Revision ID: 0005_edit_tools
Revises: 0004_templates
"""

from __future__ import annotations

from collections.abc import Callable

import sqlalchemy as sa
from alembic import op

revision = "0005_edit_tools"
down_revision = "0004_templates"
branch_labels = None
depends_on = None

EDIT_TOOLS = ["view_file", "edit_file", "insert_lines", "undo_edit"]
agent = sa.table("agent", sa.column("id", sa.Integer()), sa.column("allowed_tools", sa.JSON()))


def _rewrite(change: Callable[[list[str]], list[str]]) -> None:
    conn = op.get_bind()
    for row_id, tools in conn.execute(sa.select(agent.c.id, agent.c.allowed_tools)).all():
        new = change(list(tools or []))
        if new != list(tools or []):
            conn.execute(agent.update().where(agent.c.id == row_id).values(allowed_tools=new))


def upgrade() -> None:
    # only agents with an allow-list that includes write_file (an empty list already allows all)
    _rewrite(lambda tools: tools + [t for t in EDIT_TOOLS if t not in tools]
             if "write_file" in tools else tools)


def downgrade() -> None:
    _rewrite(lambda tools: [t for t in tools if t not in EDIT_TOOLS])
