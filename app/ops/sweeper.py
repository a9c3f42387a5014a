"""The periodic sweep: assign waiting tasks, re-queue lost ones, flush the outbox, prune workers.

Every API process and every worker runs it; each step is safe to run concurrently (atomic
claims, a lease per task), so the worst a double sweep does is enqueue a message twice.
"""

from __future__ import annotations

import logging
from datetime import timedelta

from sqlalchemy import delete
from sqlmodel import col, select

from app.core.config import get_settings
from app.core.db import get_engine, session_scope
from app.models import Agent, Task, TaskStatus, WorkerNode, utcnow
from app.tasks.enqueue import enqueue
from app.tasks.scheduling import assign_pending, mark_enqueued, stale_tasks

log = logging.getLogger(__name__)


async def assign_and_enqueue() -> int:
    """Assign pending tasks to free agents and enqueue them (after the commit).

    Every run ends with this; most find nothing pending, which a plain read tells without a
    write transaction (and on SQLite, without queueing for the write lock)."""
    async with get_engine().connect() as conn:
        pending = (await conn.execute(
            select(Task.id).where(col(Task.status) == TaskStatus.pending.value).limit(1)
        )).first()
    if pending is None:
        return 0
    async with session_scope() as session:
        assigned = await assign_pending(session)
    await enqueue((a.task_id, a.agent_name) for a in assigned)
    return len(assigned)


async def requeue_lost() -> int:
    """Re-queue tasks whose worker vanished or whose message was lost before it started."""
    settings = get_settings()
    async with session_scope() as session:
        items = []
        for task in await stale_tasks(session, grace_s=max(settings.lease_seconds, 5.0),
                                      unstarted_s=settings.requeue_unstarted_s):
            assert task.id is not None
            await mark_enqueued(session, task.id)
            agent = await session.get(Agent, task.agent_id) if task.agent_id else None
            items.append((task.id, agent.name if agent else ""))
    await enqueue(items)
    if items:
        log.info("re-queued %d lost task(s)", len(items))
    return len(items)


async def prune_workers() -> None:
    settings = get_settings()
    cutoff = utcnow() - timedelta(seconds=settings.worker_heartbeat_s * 6)
    async with session_scope() as session:
        await session.execute(delete(WorkerNode).where(col(WorkerNode.heartbeat_at) < cutoff))


async def flush_outbox() -> None:
    try:
        from app.integrations.outbox import flush_pending
    except ImportError:
        return
    await flush_pending(50)


async def expire_waits() -> None:
    """Fail unanswered questions past their timeout; wake parents whose children all ended."""
    from app.run.agent.waiting import expire_input_waits, wake_waiting_parents

    await expire_input_waits()
    await wake_waiting_parents()


async def sweep_once() -> None:
    """One pass of every sweep step; a failing step is logged and does not stop the others."""
    for step in (expire_waits, assign_and_enqueue, requeue_lost, flush_outbox, prune_workers):
        try:
            await step()
        except Exception:  # noqa: BLE001 - the next sweep retries; never let one step kill it
            log.exception("sweep step %s failed", step.__name__)
