"""Deliverables that outlive their deliverer: an ended task owes them until one run of
`after_end` has finished, whoever runs it.

The end hook sets `task.delivery_due_at` (now) in the transaction that ends a task that has
something to deliver. A deliverer claims it (moves it `lease_s()` ahead, again once the
report is made) and clears it when
done; a deliverer that dies leaves a claim that runs out, and the sweep hands the task to a
worker again. Each step is idempotent (the report is re-rendered, the PR found by its branch,
email once per Message-ID through the outbox), so a second delivery repeats no effect.

    due now ──claim──► claimed (until now + lease) ──done──► NULL
       ▲                          │ deliverer died
       └──── sweep: overdue ◄─────┘
"""

from __future__ import annotations

from datetime import timedelta
from typing import Any

from sqlalchemy import case, update
from sqlmodel import col, select

from app.core.config import get_settings
from app.core.db import session_scope
from app.models import Agent, Task, utcnow


def lease_s() -> float:
    """How long a claim holds: several task leases (a report renders in seconds), renewed once
    the report is made."""
    return max(get_settings().lease_seconds * 4, 10.0)


async def claim(task_id: int, engine: Any = None) -> bool:
    """Take the task's owed delivery for lease_s(); False when another deliverer holds
    it. True too when nothing is owed (a repeated delivery is harmless, each step idempotent)."""
    now = utcnow()
    due = col(Task.delivery_due_at)
    async with session_scope(engine) as session:
        result = await session.execute(
            update(Task)
            .where(col(Task.id) == task_id, due.is_(None) | (due <= now))
            .values(delivery_due_at=case((due.is_(None), None),
                                         else_=now + timedelta(seconds=lease_s())))
        )
        return bool(result.rowcount)  # type: ignore[attr-defined]


async def renew(task_id: int, engine: Any = None) -> None:
    async with session_scope(engine) as session:
        await session.execute(
            update(Task)
            .where(col(Task.id) == task_id, col(Task.delivery_due_at).is_not(None))
            .values(delivery_due_at=utcnow() + timedelta(seconds=lease_s())))


async def done(task_id: int, engine: Any = None) -> None:
    async with session_scope(engine) as session:
        await session.execute(
            update(Task).where(col(Task.id) == task_id).values(delivery_due_at=None))


def overdue_before(before: Any) -> Any:
    """Tasks whose delivery was due (or claimed until) before `before` (a value or a bind
    parameter)."""
    return col(Task.delivery_due_at) < before


async def overdue(grace_s: float) -> list[tuple[int, str]]:
    """(task id, agent name) of deliveries owed for `grace_s` and unclaimed (the deliverer
    died, or the message that would have started it was lost); each is pushed back by
    `grace_s`, so a sweep hands it out once per grace period."""
    now = utcnow()
    late = overdue_before(now - timedelta(seconds=grace_s))
    async with session_scope() as session:
        rows = (await session.exec(
            select(Task.id, Agent.name)
            .join(Agent, col(Agent.id) == col(Task.agent_id), isouter=True)
            .where(late).limit(100))).all()
        if rows:
            await session.execute(
                update(Task).where(col(Task.id).in_([r[0] for r in rows]), late)
                .values(delivery_due_at=now))
    return [(int(task_id or 0), name or "") for task_id, name in rows]
