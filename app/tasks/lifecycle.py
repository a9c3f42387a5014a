"""Ending a task: the one place a task becomes completed, failed or cancelled.

The status change, the agent slot's release, the `status` event and the notification rows are
one transaction, guarded so that a task ends exactly once however many callers race to end it.
"""

from __future__ import annotations

from sqlalchemy import update
from sqlalchemy.orm import aliased
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from app import integrations as deliver
from app.models import TERMINAL, Agent, Task, TaskEvent, TaskStatus, utcnow
from app.tasks.events import append_event
from app.tasks.scheduling import release_slot

TERMINAL_VALUES = [s.value for s in TERMINAL]


async def close_task(
    session: AsyncSession,
    task_id: int,
    status: TaskStatus,
    *,
    summary: str | None = None,
    error: str | None = None,
) -> list[TaskEvent]:
    """End the task (and, on cancel or failure, its unfinished children); [] if already ended."""
    now = utcnow()
    result = await session.execute(
        update(Task)
        .where(col(Task.id) == task_id, col(Task.status).not_in(TERMINAL_VALUES))
        # The lease stays: the running worker's keeper reads "cancelled" through it.
        .values(status=status.value, summary=summary, error=error, finished_at=now,
                updated_at=now)
        .returning(col(Task.agent_id), col(Task.parent_id), col(Task.model_used))
    )
    row = result.first()
    if row is None:
        return []
    held = await release_slot(session, task_id)
    if row[0] is not None and status is TaskStatus.completed:
        await session.execute(
            update(Agent).where(col(Agent.id) == row[0]).values(tasks_done=Agent.tasks_done + 1)
        )
    data = {"status": status.value, "summary": summary, "reason": error, "slot_released": held}
    if status is TaskStatus.completed:
        data["finished_by"] = row[2]
    events = [await append_event(session, task_id, "status", data)]
    # populate_existing: one SELECT that also refreshes a row the session already holds
    task = await session.get(Task, task_id, populate_existing=True)
    if task is not None:
        deliver.enqueue_notifications(session, task)
    if status is not TaskStatus.completed:
        events += await _close_children(session, task_id, status)
    if row[1] is not None:
        events += await wake_parent(session, row[1])
    return events


async def wake_parent(session: AsyncSession, parent_id: int) -> list[TaskEvent]:
    """Put a parent waiting on its children back to pending once none of them is unfinished."""
    child = aliased(Task)  # not correlated with the row being updated
    unfinished = (
        select(child.id)
        .where(child.parent_id == parent_id, col(child.status).not_in(TERMINAL_VALUES))
        .exists()
    )
    result = await session.execute(
        update(Task)
        .where(col(Task.id) == parent_id,
               col(Task.status) == TaskStatus.waiting_children.value, ~unfinished)
        .values(status=TaskStatus.pending.value, updated_at=utcnow())
        .returning(col(Task.id))
    )
    if result.scalar_one_or_none() is None:
        return []
    return [await append_event(session, parent_id, "status", {
        "status": "pending", "reason": "all subtasks have ended"})]


async def _close_children(
    session: AsyncSession, parent_id: int, status: TaskStatus
) -> list[TaskEvent]:
    children = (await session.exec(
        select(Task.id).where(Task.parent_id == parent_id,
                              col(Task.status).not_in(TERMINAL_VALUES))
    )).all()
    events: list[TaskEvent] = []
    for child_id in children:
        assert child_id is not None
        events += await close_task(
            session, child_id, TaskStatus.cancelled,
            error=f"parent task {parent_id} ended {status.value}",
        )
    return events
