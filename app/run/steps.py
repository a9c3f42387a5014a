"""StepRecord: what one step of a run has to persist, written in one transaction.

A step (model call → its tool calls) used to write its `llm_call` event and usage, every
`tool_call` event and its resource use, and the checkpoint in separate transactions, at 3–8 ms
each through SQLAlchemy async. RunContext now collects them here and `write_step` stores them
together: one UPDATE of the task row (sequence bump, counters, usage, phase), one INSERT of the
events, one upsert of the checkpoint. They are Core statements on a Core connection: an ORM
session added ~2 ms of Python per step around the same SQL.

The record is flushed right after a reply's tool calls have run and always before the next model
call, so the exactly-once rule holds as before: a tool's effect is durable in the same commit as
the checkpoint that says it happened (before, a crash between those two commits repeated it).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from sqlalchemy import Connection, bindparam, case, exists, select, update
from sqlmodel import col

from app.core.db import RunConnection, WriteLockBusy, get_engine, inline_write
from app.models import (
    TERMINAL_VALUES,
    Task,
    TaskEvent,
    TaskMessage,
    ToolIntent,
    table,
    utcnow,
)
from app.run import step_changes, steps_postgres, steps_sqlite
from app.run.checkpoints import write_checkpoint
from app.run.step_record import StepRecord
from app.tasks.events import INSERT_EVENTS, event_rows, fitted, numbered_events
from app.tools.registry import Dispatched

if TYPE_CHECKING:
    from app.run.budget import TaskTree



@dataclass
class Written:
    """What a step's write stored, and what it saw of the task's inbox at that moment."""

    events: list[TaskEvent]
    inbox_waiting: bool | None  # None: the write did not look (it touched no task row)


async def store_step(
    task_id: int, record: StepRecord, tree: TaskTree | None, connection: RunConnection
) -> Written:
    """Write `record` in one transaction (committed when this returns).

    On SQLite, inline on this thread when the write lock is free (app.core.db.inline_write):
    nothing to await, so nothing can cancel it halfway. On PostgreSQL, on the run's connection.
    Either as one statement (or three driver calls) when that covers the record
    (app.run.step_changes), otherwise the general write below."""
    one = step_changes.covers(record, tree is not None)
    changes = step_changes.changes_of(record) if one else None
    engine = get_engine()
    if engine.dialect.name == "sqlite":
        try:
            with inline_write(engine) as conn:
                if changes is not None:
                    written = steps_sqlite.write(conn, task_id, changes)
                    if written is not None:
                        return Written(*written)
                return write_step(conn, task_id, record, tree)
        except WriteLockBusy:
            pass  # another connection is writing: wait for it the way every other write does
    elif changes is not None:
        async with connection.driver() as driver:
            written = await steps_postgres.write(driver, task_id, changes)
        if written is not None:
            return Written(*written)
    async with connection.transaction() as aconn:
        return await aconn.run_sync(write_step, task_id, record, tree)


def write_step(
    conn: Connection, task_id: int, record: StepRecord, tree: TaskTree | None
) -> Written:
    """Store `record` in the connection's transaction (the caller commits and publishes)."""
    params: dict[str, Any] = {"task_id": task_id, "n_events": len(record.events),
                              "now": utcnow()}
    estimated = sum(1 for c, _ in record.calls if c.usage_estimated)
    cached = sum(c.cached_tokens for c, _ in record.calls)
    if record.tool_results or estimated or cached:
        # read-modify-write of a JSON column: under the row lock (PostgreSQL) or the write lock
        # BEGIN IMMEDIATE already holds (SQLite)
        usage = dict(conn.execute(_USAGE_FOR_UPDATE, params).scalar_one() or {})
        for result in record.tool_results:
            usage = add_resources(usage, result)
        if estimated:  # the provider reported no usage: these calls' tokens are estimates
            usage["estimated_llm_calls"] = int(usage.get("estimated_llm_calls", 0)) + estimated
        if cached:  # prompt tokens the provider read from its cache (billed at its lower rate)
            usage["cached_prompt_tokens"] = int(usage.get("cached_prompt_tokens", 0)) + cached
        params["usage"] = usage
    if record.calls:
        params.update(
            calls=len(record.calls),
            prompt_tokens=sum(c.prompt_tokens for c, _ in record.calls),
            completion_tokens=sum(c.completion_tokens for c, _ in record.calls),
            cost_usd=sum(c.cost_usd for c, _ in record.calls),
        )
        # model_used names the model doing the work: an inspector's call does not change it
        agent_models = [c.model for c, role in record.calls if role == "agent"]
        if agent_models:
            params["model_used"] = agent_models[-1]
    if record.phase is not None:
        params["phase"] = record.phase
    events: list[TaskEvent] = []
    waiting: bool | None = None
    if record.events or len(params) > 3:
        stmt = _task_update(*(key in params for key in _SHAPE))
        last_seq, waiting = conn.execute(stmt, params).one()
        events = numbered_events(task_id, last_seq - len(record.events) + 1,
                                 fitted(record.events))
        if events:
            conn.execute(INSERT_EVENTS, event_rows(events))
    if tree is not None:
        for completion, _role in record.calls:
            tree.add(conn, completion)
    if record.checkpoint is not None:
        write_checkpoint(conn, task_id, record.checkpoint, params["now"])
    for intent_id, outcome in record.done:
        conn.execute(update(table(ToolIntent)).where(col(ToolIntent.id) == intent_id)
                     .values(status="done", result=outcome, updated_at=utcnow()))
    if record.settle:
        conn.execute(update(table(ToolIntent)).where(col(ToolIntent.id).in_(record.settle))
                     .values(settled=True, updated_at=utcnow()))
    return Written(events, waiting)


# The statements of a step's write are built once and take everything as parameters: SQLAlchemy
# caches their compiled form either way, but building a statement cost more Python than running
# it (~0.5 ms a step). The task row's UPDATE comes in one shape per set of columns a step sets.
_TASK = table(Task)
_USAGE_FOR_UPDATE = (select(_TASK.c.usage).where(_TASK.c.id == bindparam("task_id"))
                     .with_for_update())
_SHAPE = ("usage", "calls", "model_used", "phase")
# whether the task has inbox messages nobody has taken: read in the same statement, so the loop
# needs no read of its own before the next model call when there are none (most steps)
_INBOX_WAITING = (exists().where(col(TaskMessage.task_id) == _TASK.c.id,
                                 col(TaskMessage.delivered_at).is_(None))
                  .label("inbox_waiting"))


@functools.cache
def _task_update(usage: bool, calls: bool, model_used: bool, phase: bool) -> Any:
    t = _TASK
    values: dict[str, Any] = {"last_seq": t.c.last_seq + bindparam("n_events"),
                              "updated_at": bindparam("now", type_=t.c.updated_at.type)}
    if usage:
        values["usage"] = bindparam("usage", type_=t.c.usage.type)
    if calls:
        values.update({column: t.c[column] + bindparam(key, type_=t.c[column].type)
                       for column, key in (("steps", "calls"), ("prompt_tokens", "prompt_tokens"),
                                           ("completion_tokens", "completion_tokens"),
                                           ("cost_usd", "cost_usd"))})
    if model_used:
        values["model_used"] = bindparam("model_used", type_=t.c.model_used.type)
    if phase:
        running = t.c.status.not_in(TERMINAL_VALUES)
        values["status"] = case((running, bindparam("phase", type_=t.c.status.type)),
                                else_=t.c.status)
        values["phase"] = case((running, bindparam("phase", type_=t.c.phase.type)),
                               else_=t.c.phase)
    return (update(t).where(t.c.id == bindparam("task_id")).values(values)
            .returning(t.c.last_seq, _INBOX_WAITING))


def add_resources(usage: dict[str, Any], result: Dispatched) -> dict[str, Any]:
    """The task's resource totals with one more tool call added."""
    data = result.data or {}
    usage["tool_calls"] = int(usage.get("tool_calls", 0)) + 1
    usage["tool_refusals"] = int(usage.get("tool_refusals", 0)) + int(result.refused)
    usage["tool_seconds"] = round(float(usage.get("tool_seconds", 0.0))
                                  + result.duration_ms / 1000, 4)
    if isinstance(data.get("cpu_s"), int | float):
        usage["cpu_s"] = round(float(usage.get("cpu_s", 0.0)) + data["cpu_s"], 4)
    if isinstance(data.get("peak_rss_kb"), int | float):
        usage["peak_rss_kb"] = max(int(usage.get("peak_rss_kb", 0)), int(data["peak_rss_kb"]))
    return usage
