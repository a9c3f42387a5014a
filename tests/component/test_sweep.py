"""The periodic sweep (app.ops.sweeper): one read tells which steps have work; an idle sweep
sends nothing else, and each kind of work is still found and done."""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import update
from sqlmodel import col, select

from app.core.db import session_scope
from app.models import Ecosystem, OutboxMessage, Task, User, WorkerNode, utcnow
from app.ops.sweeper import STEPS, due_steps, sweep_once
from tests.factories.connections import statements

LONG_AGO = timedelta(hours=2)


async def _task(client: Any) -> int:
    resp = await client.post("/tasks", json={"title": "swept", "complexity": 1})
    assert resp.status_code == 201, resp.text
    return int(resp.json()["id"])


async def _set_task(task_id: int, **values: Any) -> None:
    async with session_scope() as session:
        await session.execute(update(Task).where(col(Task.id) == task_id).values(**values))


async def _add(row: Any) -> None:
    async with session_scope() as session:
        session.add(row)


async def _waiting_input(task_id: int) -> None:
    await _set_task(task_id, status="waiting_input")


async def _waiting_children(task_id: int) -> None:
    await _set_task(task_id, status="waiting_children")


async def _pending(task_id: int) -> None:
    await _set_task(task_id, status="pending", agent_id=None)


async def _never_started(task_id: int) -> None:
    await _set_task(task_id, enqueued_at=utcnow() - LONG_AGO)


async def _lease_ran_out(task_id: int) -> None:
    await _set_task(task_id, status="build", lease_owner="gone:1",
                    lease_expires_at=utcnow() - LONG_AGO, enqueued_at=utcnow() - LONG_AGO)


async def _delivery_overdue(task_id: int) -> None:
    await _set_task(task_id, status="completed", delivery_due_at=utcnow() - LONG_AGO)


async def _email_due(task_id: int) -> None:
    await _add(OutboxMessage(task_id=task_id, kind="task_end", recipient="a@example.com",
                             message_id=f"<due-{task_id}@t>"))


async def _sender_died(task_id: int) -> None:
    await _add(OutboxMessage(task_id=task_id, kind="task_end", recipient="a@example.com",
                             message_id=f"<sending-{task_id}@t>", status="sending",
                             next_attempt_at=utcnow() + LONG_AGO,
                             lease_until=utcnow() - LONG_AGO))


async def _webhook_due(task_id: int) -> None:
    await _add(OutboxMessage(task_id=task_id, kind="webhook", recipient="http://127.0.0.1:9/",
                             message_id=f"<hook-{task_id}@t>"))


async def _dead_worker(_task_id: int) -> None:
    await _add(WorkerNode(id="dead:1", hostname="dead", pid=1,
                          heartbeat_at=utcnow() - LONG_AGO))


async def _living_round_due(_task_id: int) -> None:
    async with session_scope() as session:
        owner = (await session.exec(select(User))).first()
        assert owner is not None and owner.id is not None
        session.add(Ecosystem(owner_id=owner.id, name="due", living_status="on",
                              living_next_at=utcnow() - LONG_AGO))


WORK: dict[str, tuple[str, Callable[[int], Awaitable[None]]]] = {
    "a question past nobody answered": ("expire_waits", _waiting_input),
    "a parent waiting for its children": ("expire_waits", _waiting_children),
    "a task waiting for an agent": ("assign_and_enqueue", _pending),
    "a task no worker started": ("requeue_lost", _never_started),
    "a task whose worker died": ("requeue_lost", _lease_ran_out),
    "deliverables whose deliverer died": ("redeliver", _delivery_overdue),
    "an email due": ("flush_outbox", _email_due),
    "an email its sender died sending": ("flush_outbox", _sender_died),
    "a webhook due": ("flush_outbox", _webhook_due),
    "a worker that stopped heartbeating": ("prune_workers", _dead_worker),
    "a living ecosystem's round due": ("living_rounds", _living_round_due),
}


@pytest.mark.parametrize("db_url", ["sqlite", "postgres"], indirect=True)
async def test_an_idle_sweep_is_one_read(app_client) -> None:
    # given a task a worker is about to run, and nothing else
    await _task(app_client)
    assert await due_steps() == set()
    # when the sweep runs, then it sends the one read and nothing else
    with statements() as sent:
        await sweep_once()
    assert len(sent) == 1 and sent[0].startswith("SELECT"), sent


@pytest.mark.parametrize("work", list(WORK))
@pytest.mark.parametrize("db_url", ["sqlite", "postgres"], indirect=True)
async def test_each_kind_of_work_is_found_for_its_step(app_client, work: str) -> None:
    step, make = WORK[work]
    task_id = await _task(app_client)
    await make(task_id)
    assert await due_steps() == {step}


async def test_a_sweep_does_the_work_it_found(app_client, enqueued) -> None:
    # given a dead worker beside a live one, and a task whose worker died
    task_id = await _task(app_client)
    enqueued.clear()
    await _lease_ran_out(task_id)
    await _dead_worker(task_id)
    await _add(WorkerNode(id="live:1", hostname="live", pid=2))
    # when the sweep runs
    await sweep_once()
    # then the dead worker is gone, the live one kept, the task queued again
    async with session_scope() as session:
        workers = (await session.exec(select(WorkerNode.id))).all()
    assert workers == ["live:1"]
    assert [t for t, _queue in enqueued] == [task_id]
    assert await due_steps() == set()


async def test_when_the_read_fails_every_step_runs(app_client, monkeypatch) -> None:
    import app.ops.sweeper as sweeper

    ran: list[str] = []

    async def broken() -> set[str]:
        raise ConnectionResetError("the database went away")

    monkeypatch.setattr(sweeper, "due_steps", broken)
    monkeypatch.setattr(sweeper, "STEPS", tuple(_recording(step, ran) for step in STEPS))
    await sweeper.sweep_once()
    assert ran == [step.__name__ for step in STEPS]


def _recording(step: Callable[[], Awaitable[Any]], ran: list[str]) -> Any:
    async def recorded() -> None:
        ran.append(step.__name__)

    recorded.__name__ = step.__name__
    return recorded
