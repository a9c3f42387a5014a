"""The task's lease: taken by one worker, renewed by a keeper, given back.

A task is run only by the worker holding an unexpired lease. The keeper renews it every half
second from the moment it is taken (workspace and clone included), records what the run is doing
(app.run.activity: at once when a command starts or ends) and notices cancellation and pauses.
A delivery counts toward `max_deliveries` only when the run before it died inside a tool call
(the task's own doing: a command that kills its worker); deaths anywhere else are the
infrastructure's and never fail a task, up to a far larger cap (a run that crashes its worker the
same way every time must not loop for ever).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
from datetime import timedelta
from typing import Any

from sqlalchemy import Row, bindparam, case, func, update
from sqlmodel import col

from app.core.config import Settings
from app.core.db import connection_scope, session_scope
from app.core.transient import is_transient, to_the_end
from app.models import WORKING_VALUES, Task, TaskStatus, table, utcnow
from app.run.context import RunContext
from app.run.errors import LeaseLost, RunStopped, TaskCancelled, TaskPaused

log = logging.getLogger(__name__)
KEEPER_INTERVAL_S = 0.5
DELIVERY_CAP_FACTOR = 10  # deliveries of any death, in units of max_deliveries


async def acquire_lease(task_id: int, owner: str, settings: Settings) -> int | None:
    """Take the task's lease if it is free or expired; returns the delivery count."""
    async with connection_scope() as conn:
        row = await take_lease(conn, task_id, owner, settings)
    return None if row is None else int(row.attempts)


# the previous holder's last renewal said it was inside a tool, and it is not this worker
# retrying its own lease: that run died of the task's own doing
_DIED_IN_TOOL = case((col(Task.lease_activity).is_not(None)
                      & (func.coalesce(col(Task.lease_owner), "") != bindparam("lease_by")), 1),
                     else_=0)
# Built once (every run starts with it); returns the whole row, so the run needs no other read
# of its task.
TAKE = (
    update(table(Task))
    .where(
        col(Task.id) == bindparam("lease_task"),
        col(Task.status).in_(WORKING_VALUES),
        (col(Task.lease_owner).is_(None)) | (col(Task.lease_expires_at) < bindparam("lease_now"))
        | (col(Task.lease_owner) == bindparam("lease_by")),  # a retried lease that went through
    )
    .values(lease_owner=bindparam("lease_by"), attempts=Task.attempts + 1,
            tool_deaths=Task.tool_deaths + _DIED_IN_TOOL, lease_activity=None,
            lease_expires_at=bindparam("lease_until"),
            started_at=func.coalesce(Task.started_at, bindparam("lease_now")))
    .returning(*table(Task).c)
)


def lease_params(task_id: int, owner: str, settings: Settings) -> dict[str, Any]:
    """The parameters of TAKE (and of a statement built on it) for `owner` taking `task_id`."""
    now = utcnow()
    return {"lease_task": task_id, "lease_by": owner, "lease_now": now,
            "lease_until": now + timedelta(seconds=settings.lease_seconds)}


async def take_lease(
    conn: Any, task_id: int, owner: str, settings: Settings
) -> Row[Any] | None:
    """The task's row, leased to `owner` (its `attempts` the delivery count, `tool_deaths` the
    deliveries that died inside a tool call), or None: not ours."""
    return (await conn.execute(TAKE, lease_params(task_id, owner, settings))).first()


def too_often(attempt: int, tool_deaths: int, settings: Settings) -> str | None:
    """Why the task must fail instead of running again, if it must."""
    if tool_deaths >= settings.max_deliveries:
        return (f"its run died inside a tool call {tool_deaths} times; the task keeps killing "
                "its worker")
    if attempt > settings.max_deliveries * DELIVERY_CAP_FACTOR:
        return f"delivered {attempt} times without ending"
    return None


async def keep_lease(ctx: RunContext, work: asyncio.Task[Any],
                     stop: dict[str, RunStopped], settings: Settings) -> None:
    """Renew the lease with what the run is doing (at once when a command starts); cancel
    `work` when the task is cancelled or paused or the lease is gone."""
    task_id, owner, activity = ctx.task_id, ctx.worker_id, ctx.activity
    while not work.done():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(activity.changed.wait(), KEEPER_INTERVAL_S)
        activity.changed.clear()
        try:
            # to its end even when the keeper is stopped meanwhile (the run ended or died): a
            # renewal abandoned inside its transaction would keep SQLite's write lock
            status = await to_the_end(_renew(task_id, owner, activity.label, settings), [])
        except Exception as exc:  # a dropped connection must not end the keeper: try again
            if not is_transient(exc):
                raise
            log.warning("lease renewal of task %s failed (%s); retrying", task_id,
                        type(exc).__name__)
            continue
        if status is None:
            stop["reason"] = LeaseLost("another worker holds this task's lease")
        elif status == TaskStatus.cancelled.value:
            stop["reason"] = TaskCancelled("cancelled")
        elif status == TaskStatus.paused.value:
            stop["reason"] = TaskPaused("paused")
        else:
            continue
        work.cancel()
        return


async def _renew(task_id: int, owner: str, label: str | None, settings: Settings
                 ) -> str | None:
    """One renewal of `owner`'s lease, with what the run is doing; the task's status, or None
    when the lease is no longer `owner`'s."""
    async with connection_scope() as conn:
        result = await conn.execute(
            update(table(Task))
            .where(col(Task.id) == task_id, col(Task.lease_owner) == owner)
            .values(lease_expires_at=utcnow() + timedelta(seconds=settings.lease_seconds),
                    lease_activity=label)
            .returning(col(Task.status))
        )
        status: str | None = result.scalar_one_or_none()
    return status


async def hand_back(ctx: RunContext, reason: str, *, quiet: bool = False) -> None:
    """The jail cannot run here now (no command ran unjailed), or the database kept failing:
    let the sweep re-queue the task (after its grace period, maybe to another worker) without
    counting this delivery; it resumes from its checkpoint. With the database gone even this
    may fail (`quiet`): then the lease simply expires."""
    log.error("task %s handed back: %s", ctx.task_id, reason)
    try:
        if not quiet:
            await ctx.emit("sandbox_unavailable", {"reason": reason[:500],
                                                   "worker": ctx.worker_id})
            await ctx.flush()
        async with session_scope() as session:
            await session.execute(
                update(Task)
                .where(col(Task.id) == ctx.task_id, col(Task.lease_owner) == ctx.worker_id)
                .values(lease_expires_at=utcnow(), attempts=Task.attempts - 1,
                        lease_activity=None, enqueued_at=utcnow())
            )
    except Exception as exc:
        if not (quiet and is_transient(exc)):
            raise
        log.warning("could not hand task %s back (%s); its lease will expire", ctx.task_id,
                    type(exc).__name__)


async def let_go(task_id: int, owner: str) -> None:
    """Give a paused task's lease up once its run is wound up, so a resume starts at once."""
    async with session_scope() as session:
        await session.execute(
            update(Task).where(col(Task.id) == task_id, col(Task.lease_owner) == owner)
            .values(lease_owner=None, lease_expires_at=None, lease_activity=None))
