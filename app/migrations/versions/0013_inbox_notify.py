"""A message posted to a task notifies channel `task_inbox` (PostgreSQL only).

Revision ID: 0013_inbox_notify
Revises: 0012_living_ecosystems

Whatever inserts the row (the API, a related task, a script), a run of the task hears it at
once (app.core.listen) and needs no read of its inbox before each model call. SQLite has no
notifications: a run there reads (or takes the flag its step write returns).
"""

from __future__ import annotations

from alembic import op

revision = "0013_inbox_notify"
down_revision = "0012_living_ecosystems"
branch_labels = None
depends_on = None


def upgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("""
        CREATE OR REPLACE FUNCTION task_message_notify() RETURNS trigger
        LANGUAGE plpgsql AS $$
        BEGIN
            PERFORM pg_notify('task_inbox', NEW.task_id::text);
            RETURN NULL;
        END $$
    """)
    op.execute("""
        CREATE TRIGGER task_message_notify AFTER INSERT ON task_message
        FOR EACH ROW EXECUTE FUNCTION task_message_notify()
    """)


def downgrade() -> None:
    if op.get_bind().dialect.name != "postgresql":
        return
    op.execute("DROP TRIGGER IF EXISTS task_message_notify ON task_message")
    op.execute("DROP FUNCTION IF EXISTS task_message_notify()")
