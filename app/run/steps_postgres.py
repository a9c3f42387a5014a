"""A step's write on PostgreSQL as one statement: one round trip instead of six.

The general write (app.run.steps.write_step) is a transaction of BEGIN, a SELECT … FOR UPDATE of
the task's usage, the UPDATE of the task row, the INSERT of the events, the checkpoint's upsert
and COMMIT: six round trips to the server, each one also a wake-up of the event loop and of the
server process. Here the same rows are written by one statement, whose data-modifying CTEs run
as a single transaction of their own:

    WITH t AS (UPDATE task … RETURNING last_seq, inbox)     counters, usage, phase, sequence
         e AS (INSERT INTO task_event SELECT … FROM t, unnest(types, data))
         c AS (INSERT INTO task_checkpoint … ON CONFLICT DO UPDATE)       the loop state
         m AS (INSERT INTO task_checkpoint_message … ON CONFLICT …)     new messages only
         d AS (DELETE FROM task_checkpoint_message WHERE idx >= count)  after condensing
    SELECT last_seq, inbox FROM t

The usage totals are added up in SQL (jsonb) rather than read and written back, which is what
lets the read go (app.run.step_changes says what a step adds, and which records this covers);
tests/component/test_step_writes.py holds this form and the general one to the same rows.

A run's last step can also go with the task's one-statement end (STEP_AND_END: the end's own
statement, app.tasks.lifecycle.complete_alone_sql, with this one's fragments in it).
"""

from __future__ import annotations

import json
from datetime import datetime
from typing import TYPE_CHECKING, Any

from app.models import TERMINAL_VALUES, TaskEvent, utcnow
from app.tasks.events import data_json, numbered_events
from app.tasks.lifecycle import (
    Completed,
    EndedTask,
    complete_alone_args,
    complete_alone_sql,
    completed_by,
)

if TYPE_CHECKING:
    from app.run.step_changes import StepChanges

# $1 task  $2 events  $3 now  $4 calls  $5 prompt tokens  $6 completion tokens  $7 cost
# $8 model_used  $9 phase  $10 usage increments  $11 peak RSS  $12 event types  $13 event data
# $14 message count  $15 state  $16 checkpoint phase  $17 whether there is a checkpoint
# $18 first new message's index  $19 new messages  $20 whether the conversation shrank (rows
# past its end go); STEP's own: $21 terminal statuses

# what a step adds to the task row: its counters, model and usage totals
_ADDS = """
        steps = task.steps + $4::int,
        prompt_tokens = task.prompt_tokens + $5::int,
        completion_tokens = task.completion_tokens + $6::int,
        cost_usd = task.cost_usd + $7::float8,
        model_used = COALESCE($8::varchar, task.model_used),
        usage = CASE WHEN $10::jsonb IS NULL AND $11::bigint IS NULL THEN task.usage ELSE (
            COALESCE(task.usage::jsonb, '{}'::jsonb)
            || COALESCE((SELECT jsonb_object_agg(d.key, CASE
                    WHEN d.key IN ('tool_seconds', 'cpu_s')
                    THEN round(COALESCE((task.usage->>d.key)::numeric, 0) + d.value::numeric, 4)
                    ELSE COALESCE((task.usage->>d.key)::numeric, 0) + d.value::numeric END)
                 FROM jsonb_each_text($10::jsonb) AS d), '{}'::jsonb)
            || CASE WHEN $11::bigint IS NULL THEN '{}'::jsonb ELSE jsonb_build_object(
                   'peak_rss_kb',
                   GREATEST(COALESCE((task.usage->>'peak_rss_kb')::numeric, 0), $11::bigint))
               END)::json END"""
# what a step writes beside the task row, after `t` (whose last_seq is its last event's number)
_ROWS = """ e AS (
    INSERT INTO task_event (task_id, seq, type, data, created_at)
    SELECT $1::int, t.last_seq - $2::int + x.n::int, x.type, x.data, $3::timestamptz
    FROM t, unnest($12::varchar[], $13::json[]) WITH ORDINALITY AS x(type, data, n)
    ORDER BY x.n
), c AS (
    INSERT INTO task_checkpoint (task_id, messages, message_count, state, phase, updated_at)
    SELECT $1::int, '[]'::json, $14::int, $15::json, $16::varchar, $3::timestamptz
    FROM t WHERE $17::bool
    ON CONFLICT (task_id) DO UPDATE SET messages = excluded.messages,
        message_count = excluded.message_count, state = excluded.state,
        phase = excluded.phase, updated_at = excluded.updated_at
), m AS (
    INSERT INTO task_checkpoint_message (task_id, idx, message)
    SELECT $1::int, $18::int + x.n::int - 1, x.message
    FROM t, unnest($19::json[]) WITH ORDINALITY AS x(message, n)
    ON CONFLICT (task_id, idx) DO UPDATE SET message = excluded.message
), d AS (
    DELETE FROM task_checkpoint_message
    WHERE task_id = $1::int AND idx >= $14::int AND $20::bool AND EXISTS (SELECT 1 FROM t)
)"""
STEP = f"""
WITH t AS (
    UPDATE task SET
        last_seq = last_seq + $2::int,
        updated_at = $3::timestamptz,{_ADDS},
        status = CASE WHEN $9::varchar IS NOT NULL AND status <> ALL($21::varchar[])
                      THEN $9::varchar ELSE status END,
        phase = CASE WHEN $9::varchar IS NOT NULL AND status <> ALL($21::varchar[])
                     THEN $9::varchar ELSE phase END
    WHERE id = $1::int
    RETURNING last_seq, EXISTS (SELECT 1 FROM task_message m
                                WHERE m.task_id = task.id AND m.delivered_at IS NULL) AS inbox
),{_ROWS}
SELECT last_seq, inbox FROM t
"""  # noqa: S608 - constant fragments; every value is a parameter
# A run's last step and the task's one-statement end (app.tasks.lifecycle.complete_alone) in one
# statement: one round trip and one commit where they were two. Its guard is the end's: when
# it does not match, nothing is written (the caller writes the step and ends the task apart).
STEP_AND_END = complete_alone_sql(
    21, adds=_ADDS + ",\n        phase = COALESCE($9::varchar, task.phase)", steps="$2::int",
    rows=_ROWS)
# whether such an end went through when its answer was lost
STATUS_OF = "SELECT status FROM task WHERE id = $1::int"


def _step_args(task_id: int, c: StepChanges, now: datetime) -> list[Any]:
    """The step's parameters, $1 to $20."""
    k = c.checkpoint
    return [
        task_id, len(c.events), now, c.calls, c.prompt_tokens, c.completion_tokens,
        c.cost_usd, c.model_used, c.phase,
        json.dumps(c.usage) if c.usage else None, c.peak_rss_kb,
        [type for type, _ in c.events], [data_json(data) for _, data in c.events],
        None if k is None else len(k.messages), None if k is None else json.dumps(k.state),
        None if k is None else k.phase, k is not None,
        0 if k is None else k.start, [] if k is None else [json.dumps(m) for m in k.new],
        k is not None and k.shrunk,
    ]


async def write(driver: Any, task_id: int, changes: StepChanges
                ) -> tuple[list[TaskEvent], bool] | None:
    """Run the statement on an asyncpg connection with no transaction open (it is its own);
    the events written and whether the inbox holds unseen messages, None if the task is gone."""
    now = utcnow()
    row = await driver.fetchrow(STEP, *_step_args(task_id, changes, now),
                                list(TERMINAL_VALUES))
    if row is None:
        return None
    return (numbered_events(task_id, row["last_seq"] - len(changes.events) + 1, changes.events,
                            now=now), bool(row["inbox"]))


async def write_and_complete(driver: Any, changes: StepChanges, ended: EndedTask, *,
                             summary: str | None, finished_by: str | None) -> Completed | None:
    """Write a run's last step and end its task (completed, ends_alone) with STEP_AND_END;
    None when the end's guard did not match: nothing was written."""
    now = utcnow()
    args, data = complete_alone_args(ended, summary, finished_by, now)
    row = await driver.fetchrow(STEP_AND_END, *_step_args(ended.id, changes, now), *args)
    if row is None:
        return None
    steps = numbered_events(ended.id, row["last_seq"] - len(changes.events) + 1,
                            changes.events, now=now)
    return completed_by(ended, row, data, now, steps)
