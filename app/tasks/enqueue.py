"""The one way app/ reaches the worker: enqueue `run_task(task_id)` on the right queue.

A task goes to its agent's own queue (`agent.<name>`) when a live worker was started for that
agent (`taskbench worker --agents …`), else to the shared `taskbench` queue.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import Iterable
from datetime import timedelta

from sqlmodel import col, select

from app.core import tracing
from app.core.config import get_settings
from app.core.db import RunConnection, get_engine, session_scope
from app.models import Task, TaskStatus, WorkerNode, utcnow
from app.tasks.events import publish
from app.tasks.scheduling import assign_pending, unassign

log = logging.getLogger(__name__)
DEFAULT_QUEUE = "taskbench"
_dedicated: tuple[float, set[str]] = (0.0, set())


def queue_for_agent(name: str) -> str:
    return f"agent.{name}"


async def dedicated_agents() -> set[str]:
    """Agents some live worker is dedicated to (cached for a second)."""
    global _dedicated
    stamp, names = _dedicated
    if time.monotonic() - stamp < 1.0:
        return names
    settings = get_settings()
    alive_after = utcnow() - timedelta(seconds=settings.worker_heartbeat_s * 3)
    async with get_engine().connect() as conn:  # a read: no write lock
        rows = (await conn.execute(
            select(WorkerNode.agents).where(col(WorkerNode.heartbeat_at) > alive_after)
        )).scalars().all()
    names = {a for agents in rows for a in (agents or [])}
    _dedicated = (time.monotonic(), names)
    return names


def _send(task_id: int, queue: str, name: str = "run_task",
          headers: dict[str, str] | None = None) -> None:
    from worker.celery_app import current_celery  # the one import of worker/ from app/

    current_celery().send_task(name, args=[task_id], queue=queue, headers=headers)


async def enqueue(assignments: Iterable[tuple[int, str]], *, name: str = "run_task") -> list[int]:
    """Enqueue `name` for each (task_id, agent_name); call only after the assigning commit.

    A `run_task` the broker does not take (it is down) is not an error for the caller: the task
    is put back to pending with its agent slot released (no slot waits on a message that was
    never sent), and the sweep assigns and enqueues it again once the broker answers. Returns
    the ids of the tasks so handed back."""
    items = list(assignments)
    if not items:
        return []
    dedicated = await dedicated_agents()
    # The caller's trace (W3C traceparent) rides on the message; the worker continues it.
    headers = tracing.inject() or None
    unsent: list[tuple[int, str]] = []
    for task_id, agent_name in items:
        queue = queue_for_agent(agent_name) if agent_name in dedicated else DEFAULT_QUEUE
        try:
            await asyncio.to_thread(_send, task_id, queue, name, headers)
        except Exception as exc:  # noqa: BLE001 - any broker failure: hand the task back
            if name != "run_task":
                raise
            unsent.append((task_id, f"{type(exc).__name__}: {str(exc)[:200]}"))
    if unsent:
        await _hand_back(unsent)
    return [task_id for task_id, _ in unsent]


async def _hand_back(unsent: list[tuple[int, str]]) -> None:
    log.warning("the broker did not take %d task(s) (%s); they wait as pending and are queued "
                "again when it answers", len(unsent), unsent[0][1])
    events = []
    async with session_scope() as session:
        for task_id, error in unsent:
            events += await unassign(session, task_id, "the broker did not take the task "
                                     f"({error}); it is queued again when the broker answers")
    publish(events)


def send_task(name: str, args: list[int | str], queue: str, *,
              expires: float | None = None) -> None:
    """Send worker task `name` with plain arguments (ids, names), e.g. one scenario actor's
    turn; blocking, so async code calls it in a thread, after the commit of what it reads."""
    from worker.celery_app import current_celery  # as in _send: app/ reaches worker/ only here

    current_celery().send_task(name, args=args, queue=queue, expires=expires)


async def assign_and_enqueue(connection: RunConnection | None = None) -> int:
    """Assign pending tasks to free agents and enqueue them (after the commit).

    Every run ends with this (on its own `connection`); most find nothing pending, which a
    plain read tells without a write transaction (and on SQLite, without queueing for the write
    lock)."""
    async with (connection.read() if connection else get_engine().connect()) as conn:
        pending = (await conn.execute(
            select(Task.id).where(col(Task.status) == TaskStatus.pending.value).limit(1)
        )).first()
    if pending is None:
        return 0
    async with session_scope() as session:
        assigned = await assign_pending(session)
    await enqueue((a.task_id, a.agent_name) for a in assigned)
    return len(assigned)
