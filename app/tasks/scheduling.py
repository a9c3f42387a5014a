"""Assignment by the tools a task needs and its complexity (app.tasks.routing), with an atomic
claim, and releasing an agent's slot.

A claim is two conditional UPDATEs in one transaction: the agent's `active_tasks` goes up only
while it is below `max_concurrent`, and the task moves from `pending` only once. On PostgreSQL the
row locks make each conditional UPDATE atomic; on SQLite every transaction is BEGIN IMMEDIATE.
Callers commit, then enqueue what was assigned (never before the commit).
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from datetime import timedelta
from typing import Any

from sqlalchemy import bindparam, case, or_, update
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlalchemy.orm.attributes import set_committed_value
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from app.models import (
    WORKING_VALUES,
    Agent,
    AgentStatus,
    Task,
    TaskEvent,
    TaskStatus,
    table,
    utcnow,
)
from app.models.base import EPOCH
from app.tasks import routing
from app.tasks.events import append_event, insert_events

CLAIMABLE = (AgentStatus.available, AgentStatus.busy)


@dataclass(frozen=True)
class Assignment:
    task_id: int
    agent_id: int
    agent_name: str


def quality(agent: Agent) -> float:
    """Posterior mean of Beta(1 + passed, 1 + failed) reviews: the agent's quality score."""
    return (1 + agent.reviews_passed) / (2 + agent.reviews_passed + agent.reviews_failed)


async def enabled_agents(session: AsyncSession) -> list[Agent]:
    """Agents that are not disabled (for the 422 on submissions none of them can serve)."""
    return list((await session.exec(
        select(Agent).where(col(Agent.status).in_([*CLAIMABLE, AgentStatus.offline]))
    )).all())


# Built once, like the statements below: a submission assigns its task with them, and building
# them (not running them) was a third of a submission's CPU
_CLAIM = (
    update(table(Agent))
    .where(
        col(Agent.id) == bindparam("claim_agent"),
        col(Agent.active_tasks) < col(Agent.max_concurrent),
        col(Agent.status).in_(CLAIMABLE),
    )
    .values(
        active_tasks=Agent.active_tasks + 1,
        last_active=bindparam("claim_at"),
        status=case(
            (col(Agent.active_tasks) + 1 >= col(Agent.max_concurrent), AgentStatus.busy.value),
            else_=AgentStatus.available.value,
        ),
    )
)
# the assignment takes its event's sequence number in the same statement
_ASSIGN = (
    update(table(Task))
    .where(col(Task.id) == bindparam("assign_task"),
           col(Task.status) == TaskStatus.pending.value)
    .values(status=TaskStatus.assigned.value, agent_id=bindparam("assign_agent"),
            slot_held=True, assigned_at=bindparam("assign_at"),
            enqueued_at=bindparam("assign_at"), updated_at=bindparam("assign_at"),
            last_seq=Task.last_seq + 1)
    .returning(col(Task.last_seq))
)


async def _claim_agent(session: AsyncSession, agent_id: int) -> bool:
    result = await session.execute(_CLAIM, {"claim_agent": agent_id, "claim_at": utcnow()})
    return bool(result.rowcount)  # type: ignore[attr-defined]


# Built once (on every run's end): the slot's release, and the agent's count of tasks done
_RELEASE = (
    update(table(Task))
    .where(col(Task.id) == bindparam("slot_task"), col(Task.slot_held).is_(True))
    .values(slot_held=False)
    .returning(col(Task.agent_id))
)
_UNCLAIM = (
    update(table(Agent))
    .where(col(Agent.id) == bindparam("slot_agent"))
    .values(
        active_tasks=case((col(Agent.active_tasks) > 0, col(Agent.active_tasks) - 1), else_=0),
        status=case(
            (col(Agent.status) == AgentStatus.busy.value, AgentStatus.available.value),
            else_=Agent.status,
        ),
        tasks_done=Agent.tasks_done + bindparam("slot_done"),
    )
)
_DONE = (
    update(table(Agent))
    .where(col(Agent.id) == bindparam("slot_agent"))
    .values(tasks_done=Agent.tasks_done + 1)
)


@functools.cache
def _candidates_query(needs: bool, pinned: bool) -> Any:
    """Free agents up to a complexity (bindparams cand_complexity, cand_pinned), built once
    per shape. Their rows refresh the agents the session holds: a claim (a Core UPDATE) does
    not, and the order below reads what it changed (last_active)."""
    stmt = select(Agent).where(
        col(Agent.status).in_(CLAIMABLE),
        col(Agent.active_tasks) < col(Agent.max_concurrent),
        col(Agent.max_complexity) >= bindparam("cand_complexity"),
    )
    if not needs:
        stmt = stmt.where(col(Agent.min_complexity) <= bindparam("cand_complexity"))
    if pinned:
        stmt = stmt.where(col(Agent.name) == bindparam("cand_pinned"))
    return stmt.execution_options(populate_existing=True)


async def _candidates(session: AsyncSession, task: Task) -> list[Agent]:
    """Free agents that can serve the task (routing.can_serve), the best suited first."""
    needs = routing.task_needs(task.spec)
    stmt = _candidates_query(bool(needs), bool(task.pinned_agent))
    agents = [a for a in (await session.exec(stmt, params={
        "cand_complexity": task.complexity, "cand_pinned": task.pinned_agent})).all()
              if routing.can_serve(a, task.complexity, needs)]
    # The least over-qualified first (0 for agents covering the task); then the better reviewed;
    # among equals, the least recently active.
    agents.sort(key=lambda a: (routing.overqualification(a, task.complexity),
                               -round(quality(a), 3), a.last_active or EPOCH, a.id))
    return agents


async def try_assign(session: AsyncSession, task: Task) -> Assignment | None:
    """Give `task` to a free eligible agent, atomically; None when none is free."""
    assert task.id is not None
    for agent in await _candidates(session, task):
        assert agent.id is not None
        if not await _claim_agent(session, agent.id):
            continue
        now = utcnow()
        seq = (await session.execute(_ASSIGN, {"assign_task": task.id, "assign_agent": agent.id,
                                               "assign_at": now})).scalar_one_or_none()
        if seq is None:
            await session.execute(_UNCLAIM, {"slot_agent": agent.id, "slot_done": 0})
            return None
        # what the UPDATE changed, on the loaded task as its committed state (nothing to flush)
        for name, value in (("status", TaskStatus.assigned.value), ("agent_id", agent.id),
                            ("slot_held", True), ("assigned_at", now), ("enqueued_at", now),
                            ("updated_at", now), ("last_seq", seq)):
            set_committed_value(task, name, value)
        await insert_events(session, task.id, seq, [("status", {
            "status": "assigned", "agent": agent.name, "agent_id": agent.id,
        })])
        return Assignment(task.id, agent.id, agent.name)
    return None


async def assign_pending(session: AsyncSession, *, limit: int = 50) -> list[Assignment]:
    """Assign waiting tasks by priority then age while agents are free."""
    stmt = (
        select(Task)
        .where(col(Task.status) == TaskStatus.pending.value)
        .order_by(col(Task.priority).desc(), col(Task.created_at), col(Task.id))
        .limit(limit)
    )
    if session.bind and session.bind.dialect.name == "postgresql":
        stmt = stmt.with_for_update(skip_locked=True)
    assigned: list[Assignment] = []
    for task in list((await session.exec(stmt)).all()):
        done = await try_assign(session, task)
        if done:
            assigned.append(done)
    return assigned


async def release_slot(
    conn: AsyncSession | AsyncConnection, task_id: int, *, done_by: int | None = None
) -> bool:
    """Give the task's agent slot back, exactly once however often this is called; and count
    a completed task for the agent `done_by` in the same statement."""
    agent_id = (await conn.execute(_RELEASE, {"slot_task": task_id})).scalar_one_or_none()
    if agent_id is not None:
        await conn.execute(_UNCLAIM, {"slot_agent": agent_id,
                                      "slot_done": int(done_by == agent_id)})
    if done_by is not None and done_by != agent_id:
        await conn.execute(_DONE, {"slot_agent": done_by})
    return agent_id is not None


async def unassign(session: AsyncSession, task_id: int, reason: str) -> list[TaskEvent]:
    """Put an assigned task whose message never reached the broker back to pending and give its
    agent slot back, so nothing waits on a message that was never sent; the sweep assigns and
    enqueues it again. A task a worker already leased is left alone."""
    result = await session.execute(
        update(Task)
        .where(col(Task.id) == task_id, col(Task.status) == TaskStatus.assigned.value,
               col(Task.lease_owner).is_(None))
        .values(status=TaskStatus.pending.value, assigned_at=None, enqueued_at=None,
                updated_at=utcnow())
    )
    if not result.rowcount:  # type: ignore[attr-defined]
        return []
    await release_slot(session, task_id)  # reads the task's agent: before agent_id is cleared
    await session.execute(update(Task).where(col(Task.id) == task_id).values(agent_id=None))
    return [await append_event(session, task_id, "status", {
        "status": "pending", "reason": reason})]


async def stale_tasks(
    session: AsyncSession, *, grace_s: float, unstarted_s: float
) -> list[Task]:
    """Tasks to re-queue: their worker vanished (lease expired, re-queued after `grace_s`), or
    their message never reached a worker (never leased, queued more than `unstarted_s` ago)."""
    now = utcnow()
    stmt = select(Task).where(stale(now, now - timedelta(seconds=grace_s),
                                    now - timedelta(seconds=unstarted_s)))
    return list((await session.exec(stmt)).all())


def stale(now: Any, lost_before: Any, unstarted_before: Any) -> Any:
    """The tasks stale_tasks finds (values or bind parameters): a lease expired by `now` on a
    task queued before `lost_before`, or no lease on one queued before `unstarted_before`."""
    lost = (col(Task.lease_owner).is_not(None)) & (col(Task.lease_expires_at) < now) & or_(
        col(Task.enqueued_at).is_(None), col(Task.enqueued_at) < lost_before)
    unstarted = (col(Task.lease_owner).is_(None)) & or_(
        col(Task.enqueued_at).is_(None), col(Task.enqueued_at) < unstarted_before)
    return col(Task.status).in_(WORKING_VALUES) & or_(lost, unstarted)


async def mark_enqueued(session: AsyncSession, task_id: int) -> None:
    await session.execute(update(Task).where(col(Task.id) == task_id).values(enqueued_at=utcnow()))


__all__ = [
    "Assignment",
    "assign_pending",
    "enabled_agents",
    "mark_enqueued",
    "quality",
    "release_slot",
    "stale",
    "stale_tasks",
    "try_assign",
    "unassign",
]
