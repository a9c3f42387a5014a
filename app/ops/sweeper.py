"""The periodic sweep: assign waiting tasks, re-queue lost ones, re-send owed deliverables, flush
the outbox, prune workers, run the living ecosystems' rounds.

Every API process and every worker runs it; each step is safe to run concurrently (atomic
claims, a lease per task), so the worst a double sweep does is enqueue a message twice.

Most sweeps find nothing to do. One read (`DUE`, EXISTS per step, each on the step's own
condition or a wider one) says which steps have work, and only those run: an idle sweep was
ten statements and four write transactions (~14 ms of CPU a second in every process, and on
SQLite the write lock taken four times a second by each); it is one read now. When that read
fails, every step runs, as before.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

from sqlalchemy import bindparam, delete, exists
from sqlmodel import col, select

from app.core.config import get_settings
from app.core.db import get_engine, session_factory, session_scope
from app.integrations import due
from app.integrations.outbox import flush_pending
from app.integrations.outbox_state import due_at, stale_sending
from app.integrations.webhook import flush_webhooks
from app.models import (
    Agent,
    Ecosystem,
    Task,
    TaskStatus,
    WorkerNode,
    living_due,
    utcnow,
)
from app.tasks.enqueue import assign_and_enqueue, enqueue
from app.tasks.scheduling import mark_enqueued, stale, stale_tasks

log = logging.getLogger(__name__)


async def requeue_lost() -> int:
    """Re-queue tasks whose worker vanished or whose message was lost before it started."""
    settings = get_settings()
    grace_s = max(settings.lease_seconds, 5.0)
    # most sweeps find nothing: a plain read first, the write lock only when there is work
    async with session_factory()() as session:
        if not await stale_tasks(session, grace_s=grace_s,
                                 unstarted_s=settings.requeue_unstarted_s):
            return 0
    async with session_scope() as session:
        items = []
        for task in await stale_tasks(session, grace_s=grace_s,
                                      unstarted_s=settings.requeue_unstarted_s):
            assert task.id is not None
            await mark_enqueued(session, task.id)
            agent = await session.get(Agent, task.agent_id) if task.agent_id else None
            items.append((task.id, agent.name if agent else ""))
    await enqueue(items)
    if items:
        log.info("re-queued %d lost task(s)", len(items))
    return len(items)


async def redeliver() -> int:
    """Hand deliverables owed by an ended task to a worker again when their deliverer died or
    its message was lost (app.integrations.due)."""
    items = await due.overdue(grace_s=max(get_settings().lease_seconds, 5.0))
    if items:
        await enqueue(items, name="deliver_task")
        log.info("re-sent the deliverables of %d task(s)", len(items))
    return len(items)


async def prune_workers() -> None:
    settings = get_settings()
    cutoff = utcnow() - timedelta(seconds=settings.worker_heartbeat_s * 6)
    async with session_scope() as session:
        await session.execute(delete(WorkerNode).where(col(WorkerNode.heartbeat_at) < cutoff))


async def flush_outbox() -> None:
    await flush_pending(50)
    await flush_webhooks(50)


async def expire_waits() -> None:
    """Fail unanswered questions past their timeout; wake parents whose children all ended."""
    from app.run.agent.waiting import expire_input_waits, wake_waiting_parents

    await expire_input_waits()
    await wake_waiting_parents()


async def living_rounds() -> None:
    """Settle the living ecosystems' ended rounds and start their due ones."""
    async with session_factory()() as session:  # most sweeps: one indexed read, nothing due
        if (await session.exec(select(Ecosystem.id).where(living_due(utcnow())).limit(1))
                ).first() is None:
            return
    from app.api.living_rounds import living_rounds as run_rounds  # the API's casting, on need

    await run_rounds()


def _waiting(status: TaskStatus) -> Any:
    return exists().where(col(Task.status) == status.value)


_NOW: Any = bindparam("now")
# whether each step has work: its own condition (or a wider one), at the times sweep_once binds
DUE = select(
    (_waiting(TaskStatus.waiting_input) | _waiting(TaskStatus.waiting_children))
    .label("expire_waits")).add_columns(
    _waiting(TaskStatus.pending).label("assign_and_enqueue"),
    exists().where(stale(_NOW, bindparam("lost_before"), bindparam("unstarted_before")))
    .label("requeue_lost"),
    exists().where(due.overdue_before(bindparam("overdue_before"))).label("redeliver"),
    exists().where(due_at(_NOW) | stale_sending(_NOW)).label("flush_outbox"),
    exists().where(col(WorkerNode.heartbeat_at) < bindparam("dead_before"))
    .label("prune_workers"),
    exists().where(living_due(_NOW)).label("living_rounds"),
)
STEPS: tuple[Callable[[], Awaitable[Any]], ...] = (
    expire_waits, assign_and_enqueue, requeue_lost, redeliver, flush_outbox, prune_workers,
    living_rounds)


async def due_steps() -> set[str]:
    """The names of the steps with work now (one read)."""
    settings, now = get_settings(), utcnow()
    grace = timedelta(seconds=max(settings.lease_seconds, 5.0))
    async with get_engine().connect() as conn:
        row = (await conn.execute(DUE, {
            "now": now, "lost_before": now - grace,
            "unstarted_before": now - timedelta(seconds=settings.requeue_unstarted_s),
            "overdue_before": now - grace,
            "dead_before": now - timedelta(seconds=settings.worker_heartbeat_s * 6),
        })).one()
    return {name for name, found in row._mapping.items() if found}


async def sweep_once() -> None:
    """One pass of the sweep steps that have work (all of them when asking which failed); a
    failing step is logged and does not stop the others."""
    try:
        due_now = await due_steps()
    except Exception:  # noqa: BLE001 - not knowing which steps have work, run them all
        log.exception("the sweep could not read which steps have work; running them all")
        due_now = {step.__name__ for step in STEPS}
    for step in STEPS:
        if step.__name__ not in due_now:
            continue
        try:
            await step()
        except Exception:  # noqa: BLE001 - the next sweep retries; never let one step kill it
            log.exception("sweep step %s failed", step.__name__)
