"""A step's write on SQLite as three calls of the driver, in the inline write's transaction.

The general write (app.run.steps.write_step) runs five SQLAlchemy statements (a read of the
task's usage, the task row's UPDATE, the events, the checkpoint), ~60 µs of SQLAlchemy each
around ~10 µs of SQLite. Here the same rows go through the sqlite3 connection itself:

    UPDATE task … RETURNING last_seq, inbox     counters, usage (added up with json_patch),
                                                phase, sequence
    INSERT INTO task_event … (executemany)
    INSERT INTO task_checkpoint … ON CONFLICT DO UPDATE               the loop state
    INSERT INTO task_checkpoint_message … (executemany)               new messages only

Values are converted by the columns' own SQLAlchemy types (JSON text, the datetime format), so
the rows are exactly what the general write stores; tests/component/test_step_writes.py holds
both to the same result. app.run.step_changes says what a step adds and which records this
covers.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from app.models import TERMINAL_VALUES, Task, TaskCheckpoint, TaskEvent, table, utcnow
from app.tasks.events import data_json, numbered_events

if TYPE_CHECKING:
    from sqlalchemy import Connection

    from app.run.step_changes import StepChanges

UPDATE_TASK = """
UPDATE task SET
    last_seq = last_seq + :n_events,
    updated_at = :now,
    steps = steps + :calls,
    prompt_tokens = prompt_tokens + :prompt_tokens,
    completion_tokens = completion_tokens + :completion_tokens,
    cost_usd = cost_usd + :cost_usd,
    model_used = COALESCE(:model_used, model_used),
    status = CASE WHEN :phase IS NOT NULL
                       AND status NOT IN (SELECT value FROM json_each(:terminal))
                  THEN :phase ELSE status END,
    phase = CASE WHEN :phase IS NOT NULL
                      AND status NOT IN (SELECT value FROM json_each(:terminal))
                 THEN :phase ELSE phase END,
    usage = CASE WHEN :usage IS NULL AND :peak_rss_kb IS NULL THEN usage ELSE json_patch(
        json_patch(COALESCE(usage, '{}'), COALESCE((
            SELECT json_group_object(d.key, CASE
                WHEN d.key IN ('tool_seconds', 'cpu_s')
                THEN round(COALESCE(json_extract(task.usage, '$.' || d.key), 0.0) + d.value, 4)
                ELSE COALESCE(json_extract(task.usage, '$.' || d.key), 0) + d.value END)
            FROM json_each(:usage) AS d), '{}')),
        CASE WHEN :peak_rss_kb IS NULL THEN '{}' ELSE json_object('peak_rss_kb', max(
            COALESCE(json_extract(task.usage, '$.peak_rss_kb'), 0), :peak_rss_kb)) END) END
WHERE id = :task_id
RETURNING last_seq, EXISTS (SELECT 1 FROM task_message m
                            WHERE m.task_id = task.id AND m.delivered_at IS NULL)
"""
INSERT_EVENTS = ("INSERT INTO task_event (task_id, seq, type, data, created_at) "
                 "VALUES (?, ?, ?, ?, ?)")
UPSERT_CHECKPOINT = """
INSERT INTO task_checkpoint (task_id, messages, message_count, state, phase, updated_at)
VALUES (?, '[]', ?, ?, ?, ?)
ON CONFLICT (task_id) DO UPDATE SET messages = excluded.messages,
    message_count = excluded.message_count, state = excluded.state, phase = excluded.phase,
    updated_at = excluded.updated_at
"""
UPSERT_MESSAGE = """
INSERT INTO task_checkpoint_message (task_id, idx, message) VALUES (?, ?, ?)
ON CONFLICT (task_id, idx) DO UPDATE SET message = excluded.message
"""
DELETE_MESSAGES_FROM = "DELETE FROM task_checkpoint_message WHERE task_id = ? AND idx >= ?"


def write(conn: Connection, task_id: int, changes: StepChanges
          ) -> tuple[list[TaskEvent], bool] | None:
    """Write `changes` in `conn`'s transaction (an inline write's: app.core.db); the events
    written and whether the inbox holds unseen messages, None if the task is gone."""
    c = changes
    when, as_json = _converters(conn.dialect)
    now = utcnow()
    stored_now = when(now)
    cursor = conn.connection.dbapi_connection.cursor()  # type: ignore[union-attr]
    try:
        row = cursor.execute(UPDATE_TASK, {
            "task_id": task_id, "n_events": len(c.events), "now": stored_now,
            "calls": c.calls, "prompt_tokens": c.prompt_tokens,
            "completion_tokens": c.completion_tokens, "cost_usd": c.cost_usd,
            "model_used": c.model_used, "phase": c.phase, "terminal": _TERMINAL,
            "usage": json.dumps(c.usage) if c.usage else None, "peak_rss_kb": c.peak_rss_kb,
        }).fetchone()
        if row is None:
            return None
        events = numbered_events(task_id, row[0] - len(c.events) + 1, c.events, now=now)
        if events:
            cursor.executemany(INSERT_EVENTS, [
                (task_id, e.seq, e.type, data_json(e.data), stored_now) for e in events])
        if c.checkpoint is not None:  # the loop state, and the messages new since the last
            k = c.checkpoint
            cursor.execute(UPSERT_CHECKPOINT, (task_id, len(k.messages), as_json(k.state),
                                               k.phase, stored_now))
            if k.new:
                cursor.executemany(UPSERT_MESSAGE, [
                    (task_id, k.start + i, as_json(m)) for i, m in enumerate(k.new)])
            if k.shrunk:
                cursor.execute(DELETE_MESSAGES_FROM, (task_id, len(k.messages)))
    finally:
        cursor.close()
    return events, bool(row[1])


_TERMINAL = json.dumps(list(TERMINAL_VALUES))


@functools.lru_cache(maxsize=8)
def _converters(dialect: Any) -> tuple[Callable[[Any], Any], Callable[[Any], Any]]:
    """How the columns' SQLAlchemy types store a datetime and a JSON value on this dialect."""
    when = table(Task).c.updated_at.type.bind_processor(dialect)
    as_json = table(TaskEvent).c.data.type.bind_processor(dialect)
    assert when is not None and as_json is not None
    assert table(TaskCheckpoint).c.messages.type.bind_processor(dialect) is not None
    return when, as_json
