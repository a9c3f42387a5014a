"""Ending a task: the one place a task becomes completed, failed or cancelled; and pausing it.

The status change, the agent slot's release, the `status` event and the notification rows (added
by the hooks registered with `on_end`, see app.integrations) are one transaction, guarded so that
a task ends exactly once however many callers race to end it.

    pause_task    pending | assigned | working → paused: the slot is given back at once; the
                  worker holding the lease reads "paused" through it and stops the run (as for a
                  cancel), then lets the lease go
    resume_task   paused → pending: the scheduler gives it to an agent again and the run goes on
                  from its checkpoint; the time it spent paused does not count against its
                  time budget
"""

from __future__ import annotations

import json
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import JSON, Boolean, Integer, String, bindparam, column, text, update
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.orm import aliased
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from app.models import (
    TERMINAL_VALUES,
    WORKING_VALUES,
    AgentStatus,
    OutboxStatus,
    Task,
    TaskEvent,
    TaskStatus,
    table,
    utcnow,
)
from app.tasks.events import (
    append_event,
    append_events,
    fitted,
    insert_events,
    numbered_events,
)
from app.tasks.scheduling import release_slot


@dataclass(frozen=True)
class EndedTask:
    """What the hooks of a task's end see of it: returned by the ending UPDATE itself, so no
    row is read (or loaded into a session) to end a task."""

    id: int
    status: TaskStatus
    attempts: int
    notify: dict[str, Any] | None
    github: dict[str, Any] | None

    @classmethod
    def of(cls, task: Task) -> EndedTask:
        assert task.id is not None
        return cls(id=task.id, status=TaskStatus(task.status), attempts=task.attempts,
                   notify=task.notify, github=task.github)


# Awaited with (connection or session, ended task) in the transaction that ends the task: what
# must commit with the status change (the notification rows), written as Core statements.
# app.integrations registers its hook when imported.
EndHook = Callable[[AsyncSession | AsyncConnection, EndedTask], Awaitable[None]]
_ON_END: list[EndHook] = []
# whether a hook writes anything for a task ending so (a hook without one is taken to)
_WRITES: dict[EndHook, Callable[[EndedTask], bool]] = {}

# Built once: a task's end is on every run's path, and building the statement (not running it)
# was most of its cost. The sequence number of the `status` event is taken in the same UPDATE.
_END = (
    update(table(Task))
    .where(col(Task.id) == bindparam("end_id"), col(Task.status).not_in(TERMINAL_VALUES))
    # The lease stays: the running worker's keeper reads "cancelled" through it.
    .values(status=bindparam("end_status"), summary=bindparam("end_summary"),
            error=bindparam("end_error"), finished_at=bindparam("end_at"),
            updated_at=bindparam("end_at"), last_seq=Task.last_seq + 1)
    .returning(col(Task.agent_id), col(Task.parent_id), col(Task.model_used),
               col(Task.last_seq), col(Task.attempts), col(Task.notify), col(Task.github))
)


_OPEN = [s.value for s in TaskStatus if s.value not in TERMINAL_VALUES]
# PostgreSQL: _END, the slot's release and the agent's counts (app.tasks.scheduling's
# release_slot) as one statement, two round trips fewer on every task's end. The row is locked
# first so that `held` is the slot as it was: a racing end finds the task ended and does
# nothing; a racing pause's release is seen (its slot_held already false).
_END_AND_RELEASE = text("""
WITH old AS (
    SELECT id, slot_held FROM task
    WHERE id = :end_id AND status = ANY(CAST(:end_open AS varchar[]))
    FOR UPDATE
), t AS (
    UPDATE task SET status = :end_status, summary = :end_summary, error = :end_error,
        finished_at = :end_at, updated_at = :end_at, last_seq = task.last_seq + 1,
        slot_held = false
    FROM old WHERE task.id = old.id
    RETURNING task.agent_id, task.parent_id, task.model_used, task.last_seq, task.attempts,
        task.notify, task.github, old.slot_held AS held
), a AS (
    UPDATE agent SET
        active_tasks = CASE WHEN t.held THEN GREATEST(agent.active_tasks - 1, 0)
                            ELSE agent.active_tasks END,
        status = CASE WHEN t.held AND agent.status = CAST(:agent_busy AS varchar)
                      THEN CAST(:agent_available AS varchar) ELSE agent.status END,
        tasks_done = agent.tasks_done + CAST(:end_done AS int)
    FROM t WHERE agent.id = t.agent_id AND (t.held OR CAST(:end_done AS int) = 1)
)
SELECT agent_id, parent_id, model_used, last_seq, attempts, notify, github, held FROM t
""").columns(column("agent_id", Integer), column("parent_id", Integer),
             column("model_used", String), column("last_seq", Integer),
             column("attempts", Integer), column("notify", JSON), column("github", JSON),
             column("held", Boolean))


def _dialect(conn: AsyncSession | AsyncConnection) -> str:
    if isinstance(conn, AsyncSession):
        return conn.get_bind().dialect.name
    return conn.dialect.name


def on_end(hook: EndHook, *, writes: Callable[[EndedTask], bool] | None = None) -> None:
    """Run `hook` in every task-ending transaction (once, however often it is registered).
    `writes(ended)` says whether it writes anything for a task ending so: where no hook does,
    a completed task may end in one statement (`complete_alone`)."""
    if hook not in _ON_END:
        _ON_END.append(hook)
    if writes is not None:
        _WRITES[hook] = writes


def ends_alone(ended: EndedTask) -> bool:
    """Whether ending `ended` writes nothing but its own row, its agent's and its status event:
    every hook says it writes nothing for it."""
    return all(hook in _WRITES and not _WRITES[hook](ended) for hook in _ON_END)


@dataclass(frozen=True)
class Completed:
    """What `complete_alone` wrote, and what its caller does next with it: the status event
    to publish, the task's agent (its queue), whether the task has email not yet sent (a
    `send_email` whose own flush failed) and whether any task waits for an agent."""

    events: list[TaskEvent]
    agent: str | None
    unsent: bool
    pending: bool


# A completed task whose end writes nothing else (ends_alone), not a subtask, ended on
# PostgreSQL as ONE statement in autocommit: the status change, the slot's release and the
# agent's counts (as _END_AND_RELEASE), the status event, and what the caller reads next. The
# general end is BEGIN, _END_AND_RELEASE, the event's INSERT, COMMIT and a read after it: five
# round trips through SQLAlchemy. The guard is what made the end alone: a task whose notify or
# github changed since (or that ended meanwhile) is not matched, and the caller ends it the
# general way.
# Its parameters: $1 the task, then from $`first` on (2 in COMPLETE_ALONE) in this order: the open
# statuses, notify, github, the summary, now, the status event's data (its slot_released added
# here), busy, available, completed, pending, the outbox's pending. A run's last step can be
# written by the same statement (app.run.steps_postgres): `adds` sets more of the task row,
# `steps` more events numbered before the status event (an SQL count), `rows` more CTEs after
# `t`, whose last_seq is then the last of those events' number.
_ALONE_PARAMS = ("open", "notify", "github", "summary", "now", "data", "busy", "available",
                 "completed", "pending", "outbox")


def complete_alone_sql(first: int = 2, *, adds: str = "", steps: str = "0",
                       rows: str = "") -> str:
    """The one-statement end, its own parameters numbered from `first`."""
    p = {name: f"${first + i}" for i, name in enumerate(_ALONE_PARAMS)}
    return f"""
WITH old AS (
    SELECT id, slot_held FROM task
    WHERE id = $1::int AND status = ANY({p["open"]}::varchar[]) AND parent_id IS NULL
      AND COALESCE(notify::jsonb, 'null'::jsonb) = COALESCE({p["notify"]}::jsonb, 'null'::jsonb)
      AND COALESCE(github::jsonb, 'null'::jsonb) = COALESCE({p["github"]}::jsonb, 'null'::jsonb)
    FOR UPDATE
), t AS (
    UPDATE task SET status = {p["completed"]}::varchar, summary = {p["summary"]}::varchar,
        error = NULL, finished_at = {p["now"]}::timestamptz,
        updated_at = {p["now"]}::timestamptz, last_seq = task.last_seq + {steps} + 1,
        slot_held = false{"," if adds else ""}{adds}
    FROM old WHERE task.id = old.id
    RETURNING task.id, task.agent_id, task.last_seq - 1 AS last_seq, task.last_seq AS end_seq,
        old.slot_held AS held
), a AS (
    UPDATE agent SET
        active_tasks = CASE WHEN t.held THEN GREATEST(agent.active_tasks - 1, 0)
                            ELSE agent.active_tasks END,
        status = CASE WHEN t.held AND agent.status = {p["busy"]}::varchar
                      THEN {p["available"]}::varchar ELSE agent.status END,
        tasks_done = agent.tasks_done + 1
    FROM t WHERE agent.id = t.agent_id
    RETURNING agent.name
), s AS (
    INSERT INTO task_event (task_id, seq, type, data, created_at)
    SELECT t.id, t.end_seq, 'status',
           ({p["data"]}::jsonb || jsonb_build_object('slot_released', t.held))::json,
           {p["now"]}::timestamptz
    FROM t
){"," if rows else ""}{rows}
SELECT t.last_seq, t.end_seq, t.held, (SELECT name FROM a) AS agent,
       EXISTS (SELECT 1 FROM outbox_message m
               WHERE m.task_id = $1::int AND m.status = {p["outbox"]}::varchar) AS unsent,
       EXISTS (SELECT 1 FROM task w WHERE w.status = {p["pending"]}::varchar) AS pending
FROM t
"""  # noqa: S608 - constant fragments; every value is a parameter


COMPLETE_ALONE = complete_alone_sql()


def complete_alone_args(ended: EndedTask, summary: str | None, finished_by: str | None,
                        now: datetime) -> tuple[list[Any], dict[str, Any]]:
    """COMPLETE_ALONE's parameters after the task's id, and the status event's data."""
    (_, data), = fitted([("status", {"status": TaskStatus.completed.value, "summary": summary,
                                     "reason": None, "finished_by": finished_by})])
    return [_OPEN, json.dumps(ended.notify), json.dumps(ended.github), summary, now,
            json.dumps(data), AgentStatus.busy.value, AgentStatus.available.value,
            TaskStatus.completed.value, TaskStatus.pending.value,
            OutboxStatus.pending.value], data


def completed_by(ended: EndedTask, row: Any, data: dict[str, Any], now: datetime,
                 events: list[TaskEvent] | None = None) -> Completed:
    """What a one-statement end wrote (`events`: those written before its status event)."""
    status = numbered_events(ended.id, row["end_seq"],
                             [("status", {**data, "slot_released": row["held"]})], now=now)
    return Completed([*(events or []), *status], row["agent"], bool(row["unsent"]),
                     bool(row["pending"]))


async def complete_alone(driver: Any, ended: EndedTask, *, summary: str | None,
                         finished_by: str | None) -> Completed | None:
    """End `ended` (completed, ends_alone) with COMPLETE_ALONE on an asyncpg connection with no
    transaction open; None when the guard did not match (ended already, or no longer alone):
    the caller ends it with close_task."""
    now = utcnow()
    args, data = complete_alone_args(ended, summary, finished_by, now)
    row = await driver.fetchrow(COMPLETE_ALONE, ended.id, *args)
    if row is None:
        return None
    return completed_by(ended, row, data, now)


async def close_task(
    conn: AsyncSession | AsyncConnection,
    task_id: int,
    status: TaskStatus,
    *,
    summary: str | None = None,
    error: str | None = None,
) -> list[TaskEvent]:
    """End the task (and, on cancel or failure, its unfinished children); [] if already ended.

    Core statements, so `conn` may be a session or the run's own connection."""
    now = utcnow()
    completed = status is TaskStatus.completed
    params = {"end_id": task_id, "end_status": status.value, "end_summary": summary,
              "end_error": error, "end_at": now}
    if _dialect(conn) == "postgresql":
        # the end, the slot's release and the agent's counts in one statement
        row = (await conn.execute(_END_AND_RELEASE, {
            **params, "end_open": _OPEN, "end_done": int(completed),
            "agent_busy": AgentStatus.busy.value,
            "agent_available": AgentStatus.available.value})).first()
        if row is None:
            return []
        agent_id, parent_id, model_used, seq, attempts, notify, github, held = row
    else:
        row = (await conn.execute(_END, params)).first()
        if row is None:
            return []
        agent_id, parent_id, model_used, seq, attempts, notify, github = row
        held = await release_slot(conn, task_id, done_by=agent_id if completed else None)
    data = {"status": status.value, "summary": summary, "reason": error, "slot_released": held}
    if completed:
        data["finished_by"] = model_used
    events = await insert_events(conn, task_id, seq, [("status", data)])
    ended = EndedTask(id=task_id, status=status, attempts=attempts, notify=notify, github=github)
    for hook in _ON_END:
        await hook(conn, ended)
    if not completed:
        events += await _close_children(conn, task_id, status)
    if parent_id is not None:
        events += await wake_parent(conn, parent_id)
    return events


async def wake_parent(
    conn: AsyncSession | AsyncConnection, parent_id: int
) -> list[TaskEvent]:
    """Put a parent waiting on its children back to pending once none of them is unfinished."""
    child = aliased(Task)  # not correlated with the row being updated
    unfinished = (
        select(child.id)
        .where(child.parent_id == parent_id, col(child.status).not_in(TERMINAL_VALUES))
        .exists()
    )
    result = await conn.execute(
        update(table(Task))
        .where(col(Task.id) == parent_id,
               col(Task.status) == TaskStatus.waiting_children.value, ~unfinished)
        .values(status=TaskStatus.pending.value, updated_at=utcnow())
        .returning(col(Task.id))
    )
    if result.scalar_one_or_none() is None:
        return []
    return await append_events(conn, parent_id, [("status", {
        "status": "pending", "reason": "all subtasks have ended"})])


async def _close_children(
    conn: AsyncSession | AsyncConnection, parent_id: int, status: TaskStatus
) -> list[TaskEvent]:
    children = (await conn.execute(
        select(col(Task.id)).where(col(Task.parent_id) == parent_id,
                                   col(Task.status).not_in(TERMINAL_VALUES))
    )).scalars().all()
    events: list[TaskEvent] = []
    for child_id in children:
        assert child_id is not None
        events += await close_task(
            conn, child_id, TaskStatus.cancelled,
            error=f"parent task {parent_id} ended {status.value}",
        )
    return events


PAUSABLE_VALUES = (TaskStatus.pending.value, *WORKING_VALUES)


async def pause_task(session: AsyncSession, task_id: int, *, by: str) -> list[TaskEvent]:
    """Pause the task now ([] when it is not pending or working: waiting, paused or ended)."""
    result = await session.execute(
        update(Task)
        .where(col(Task.id) == task_id, col(Task.status).in_(PAUSABLE_VALUES))
        # The lease stays: the running worker's keeper reads "paused" through it and stops.
        .values(status=TaskStatus.paused.value, updated_at=utcnow())
        .returning(col(Task.id))
    )
    if result.scalar_one_or_none() is None:
        return []
    held = await release_slot(session, task_id)
    return [await append_event(session, task_id, "status", {
        "status": TaskStatus.paused.value, "reason": f"paused by {by}", "slot_released": held})]


async def resume_task(session: AsyncSession, task_id: int, *, by: str) -> list[TaskEvent]:
    """Put a paused task back in the queue ([] when it is not paused)."""
    task = await session.get(Task, task_id, populate_existing=True)
    if task is None or task.status != TaskStatus.paused.value:
        return []
    paused_at = (await session.exec(
        select(TaskEvent.created_at).where(TaskEvent.task_id == task_id,
                                           TaskEvent.type == "status")
        .order_by(col(TaskEvent.seq).desc()).limit(1))).first()
    started = task.started_at
    if started is not None and paused_at is not None:
        # the run's clock (its timeout) counts from started_at: move it by the pause
        started = started + max(utcnow() - paused_at, timedelta(0))
    result = await session.execute(
        update(Task)
        .where(col(Task.id) == task_id, col(Task.status) == TaskStatus.paused.value)
        # attempts restart: a pause is a clean hand-back, not a worker dying mid-task
        .values(status=TaskStatus.pending.value, attempts=0, started_at=started,
                updated_at=utcnow())
        .returning(col(Task.id))
    )
    if result.scalar_one_or_none() is None:
        return []
    return [await append_event(session, task_id, "status", {
        "status": TaskStatus.pending.value, "reason": f"resumed by {by}"})]
