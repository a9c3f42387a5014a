"""A run's checkpoint: the loop state in task_checkpoint, the conversation as appended rows.

A checkpoint used to rewrite the whole conversation as one JSON value at every step: quadratic
in a long task (step n serialised and wrote n messages). Now each message is a row of
task_checkpoint_message, and a step writes only what is new since what the store holds
(RunContext.stored_messages, the same message objects as the loop's list):

    stored   m0 m1 m2 m3                  what the last written checkpoint held
    now      m0 m1 m2 m3 m4 m5            a step appended two: rows 4 and 5 are written
    now      m0 m1 c2 m5                  condensed (app.run.condense): rows 2 and 3 are
                                          rewritten, rows past 4 go; message_count says 4

The loop never changes a message in place once it is in the list (it appends, or replaces the
list's contents when it condenses), so a message that is the same object as the stored one at
that position is the stored one. `message_count` is written with every checkpoint, so rows a
shorter conversation left behind are never read as part of it. A checkpoint written before
(message_count NULL) still holds its whole conversation in task_checkpoint.messages.
"""

from __future__ import annotations

import json
from typing import Any

from sqlalchemy import Connection, bindparam, delete, select
from sqlmodel import col

from app.core.db import RunConnection, get_engine, upsert_insert
from app.models import CheckpointMessage, TaskCheckpoint, from_row, table
from app.run.step_record import Checkpoint

Messages = list[dict[str, Any]]


def checkpoint_of(messages: Messages, stored: Messages, state: dict[str, Any],
                  phase: str | None) -> Checkpoint:
    """The checkpoint of `messages` as a delta of `stored` (what the store holds)."""
    start, same = 0, min(len(messages), len(stored))
    while start < same and messages[start] is stored[start]:
        start += 1
    return Checkpoint(messages=messages, start=start, stored=len(stored), state=state,
                      phase=phase)


async def load_checkpoint(task_id: int, connection: RunConnection | None = None
                          ) -> TaskCheckpoint | None:
    """The task's checkpoint with its conversation put back together (None: there is none).

    On PostgreSQL with the run's `connection`, one statement on its kept connection (no pool
    checkout, pre-ping, BEGIN and ROLLBACK around the reads: four round trips fewer)."""
    if connection is not None and get_engine().dialect.name == "postgresql":
        async with connection.driver() as driver:
            row = await driver.fetchrow(LOAD, task_id)
        if row is None:
            return None
        legacy = row["message_count"] is None
        return TaskCheckpoint(
            task_id=row["task_id"], phase=row["phase"], message_count=row["message_count"],
            state=_json(row["state"]) or {},
            messages=_json(row["messages"] if legacy else row["rows"]) or [],
            updated_at=row["updated_at"])
    async with get_engine().connect() as conn:
        row = (await conn.execute(
            table(TaskCheckpoint).select().where(col(TaskCheckpoint.task_id) == task_id)
        )).first()
        if row is None:
            return None
        checkpoint = from_row(TaskCheckpoint, row._mapping)
        if checkpoint.message_count is not None:
            m = table(CheckpointMessage)
            checkpoint.messages = list((await conn.execute(
                select(m.c.message).where(m.c.task_id == task_id,
                                          m.c.idx < checkpoint.message_count)
                .order_by(m.c.idx))).scalars())
    return checkpoint


LOAD = """
SELECT c.task_id, c.phase, c.messages, c.message_count, c.state, c.updated_at,
       COALESCE((SELECT json_agg(m.message ORDER BY m.idx) FROM task_checkpoint_message m
                 WHERE m.task_id = c.task_id AND m.idx < c.message_count), '[]'::json) AS rows
FROM task_checkpoint c WHERE c.task_id = $1::int
"""


def _json(value: Any) -> Any:
    """A JSON column's value as asyncpg hands it over: decoded already (the codec SQLAlchemy
    sets on its connections) or text."""
    return json.loads(value) if isinstance(value, str | bytes) else value


def write_checkpoint(conn: Connection, task_id: int, checkpoint: Checkpoint, now: Any) -> None:
    """Write `checkpoint` in the connection's transaction (the general write's way)."""
    c = checkpoint
    conn.execute(_upsert(conn.dialect.name, "checkpoint"), {
        "task_id": task_id, "messages": [], "message_count": len(c.messages),
        "state": c.state, "phase": c.phase, "updated_at": now})
    if c.new:
        conn.execute(_upsert(conn.dialect.name, "message"), [
            {"task_id": task_id, "idx": c.start + i, "message": message}
            for i, message in enumerate(c.new)])
    if c.shrunk:
        m = table(CheckpointMessage)
        conn.execute(delete(m).where(m.c.task_id == task_id, m.c.idx >= len(c.messages)))


_UPSERTS: dict[tuple[str, str], Any] = {}


def _upsert(dialect: str, what: str) -> Any:
    """The checkpoint row's or a message row's upsert, built once per dialect."""
    key = (dialect, what)
    if key not in _UPSERTS:
        t = table(TaskCheckpoint) if what == "checkpoint" else table(CheckpointMessage)
        columns = (["task_id", "messages", "message_count", "state", "phase", "updated_at"]
                   if what == "checkpoint" else ["task_id", "idx", "message"])
        keys = ["task_id"] if what == "checkpoint" else ["task_id", "idx"]
        values = {k: bindparam(k, type_=t.c[k].type) for k in columns}
        stmt = upsert_insert(dialect)(t).values(values)
        _UPSERTS[key] = stmt.on_conflict_do_update(
            index_elements=[t.c[k] for k in keys],
            set_={k: stmt.excluded[k] for k in columns if k not in keys})
    return _UPSERTS[key]
