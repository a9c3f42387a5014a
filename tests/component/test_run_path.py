"""A worker's run of a no-op task, the pipeline's hot path (issue 15: throughput): one database
connection for the whole run, few statements, and an end that leaves everything as it was
when the end took seven statements in an ORM session."""

from __future__ import annotations

import asyncio

import pytest
from sqlmodel import col, select

from app.core.db import session_scope
from app.models import Agent, OutboxMessage, Task
from tests.factories import run_enqueued
from tests.factories.connections import checkouts, statements
from tests.factories.ending import assert_ended_once, holding_slot
from tests.fakes.llm_server import finish

pytestmark = pytest.mark.parametrize("db_url", ["sqlite", "postgres"], indirect=True)


async def _noop(app_client, enqueued, llm, **body) -> int:  # noqa: ANN001
    llm.responder = lambda _req: finish("nothing to do")
    resp = await app_client.post("/tasks", json={"title": "t", "complexity": 1, **body})
    assert resp.status_code == 201, resp.text
    return int(resp.json()["id"])


async def test_a_run_uses_one_connection_and_few_statements(app_client, enqueued, llm, db_url):
    # given a warm worker process (its first run loads what it needs) and a no-op task queued
    await _noop(app_client, enqueued, llm)
    assert await run_enqueued(enqueued) == ["ran"]
    task_id = await _noop(app_client, enqueued, llm)
    # when a worker runs it
    with checkouts() as taken, statements() as sent:
        assert await run_enqueued(enqueued) == ["ran"]
    # then the lease, the reads, the step writes, the end and the look for waiting work all
    # went through one connection: on PostgreSQL the one the last run kept, taken from the
    # pool not even once (on SQLite once, and the reads take pooled connections of their own:
    # the run's begins IMMEDIATE, and a read there would queue for the write lock); the lease
    # returned the task's row and the end its columns, so neither reads the task back
    if db_url.startswith("postgresql"):
        assert len(taken) == 0, taken
        # nothing through SQLAlchemy (it was 14 statements, in 5 checkouts; 9 while the end
        # was four statements and a first run read its journal; 5 while the end was two and
        # a read after it): the lease, the workspace, the step writes and a lone end go to
        # the driver directly, one statement each, and a first run reads no checkpoint
        assert sent == [], "\n".join(sent)
    else:
        assert len(sent) <= 16, "\n".join(sent)
    whole_rows = [s for s in sent if s.startswith("SELECT task.title")]
    assert whole_rows == [], sent
    task = (await app_client.get(f"/tasks/{task_id}")).json()
    assert task["status"] == "completed"


async def test_an_ended_run_frees_its_slot_counts_once_and_owes_nothing(
        app_client, enqueued, llm):
    # given a no-op task that asks for no deliverables
    task_id = await _noop(app_client, enqueued, llm)
    async with session_scope() as session:
        agent_id = (await session.get(Task, task_id)).agent_id  # type: ignore[union-attr]
        before = (await session.get(Agent, agent_id)).tasks_done  # type: ignore[union-attr]
    # when it runs and ends
    assert await run_enqueued(enqueued) == ["ran"]
    # then the slot is back, the agent counted it once, and nothing is owed
    async with session_scope() as session:
        task = await session.get(Task, task_id)
        agent = await session.get(Agent, agent_id)
        rows = (await session.exec(select(OutboxMessage)
                                   .where(col(OutboxMessage.task_id) == task_id))).all()
    assert task is not None and agent is not None
    assert task.status == "completed" and task.slot_held is False
    assert task.delivery_due_at is None and rows == []
    assert agent.active_tasks == 0 and agent.tasks_done == before + 1
    events = (await app_client.get(f"/tasks/{task_id}/events")).json()["data"]
    ended = [e for e in events if e["type"] == "status"][-1]
    assert ended["data"] == {"status": "completed", "summary": "nothing to do", "reason": None,
                             "slot_released": True, "finished_by": task.model_used}
    assert task.model_used
    assert ended["seq"] == events[-1]["seq"] == len(events)


async def test_an_ended_run_with_recipients_owes_its_mail_in_the_same_commit(
        app_client, enqueued, llm):
    # given a no-op task whose owner wants an email at its end
    task_id = await _noop(app_client, enqueued, llm,
                          notify={"email": ["Ann@example.com", "ann@example.com"]})
    # when it runs and ends
    assert await run_enqueued(enqueued) == ["ran"]
    # then one message per recipient (case folded) was written with the end, and delivered
    # by the deliverables run it owed (which then owes nothing more)
    async with session_scope() as session:
        task = await session.get(Task, task_id)
        rows = (await session.exec(select(OutboxMessage)
                                   .where(col(OutboxMessage.task_id) == task_id))).all()
    assert [(r.kind, r.recipient.lower(), r.status) for r in rows] == [
        ("task_end", "ann@example.com", "sent")]
    assert task is not None and task.delivery_due_at is None


async def test_an_ended_run_hands_its_agent_to_a_waiting_task(app_client, enqueued, llm):
    # given one agent with one slot, busy with a task, and a second task waiting for it
    async with session_scope() as session:
        for agent in (await session.exec(select(Agent))).all():
            agent.max_concurrent = 1
            session.add(agent)
    first = await _noop(app_client, enqueued, llm, agent="junior")
    second = await _noop(app_client, enqueued, llm, agent="junior")
    assert (await app_client.get(f"/tasks/{second}")).json()["status"] == "pending"
    # when the worker runs what is queued
    # then the first run's end found the waiting task and queued it: both ran
    assert await run_enqueued(enqueued) == ["ran", "ran"]
    for task_id in (first, second):
        assert (await app_client.get(f"/tasks/{task_id}")).json()["status"] == "completed"


async def test_a_task_ended_twice_at_once_ends_once(app_client, enqueued, llm):
    # given a task assigned to an agent, holding one of its slots
    from app.models import TaskStatus
    from app.tasks.lifecycle import close_task

    held = await holding_slot(await _noop(app_client, enqueued, llm))

    # when two callers end it at the same moment, one as completed, one as cancelled
    async def end(status: TaskStatus) -> list:
        async with session_scope() as session:
            return await close_task(session, held.task_id, status, summary="s", error="e")

    ended = await asyncio.gather(end(TaskStatus.completed), end(TaskStatus.cancelled))
    # then exactly one of them ended it: one status event, the slot given back once, the
    # agent counted once and only if it was the completion that went through
    assert sorted(len(e) for e in ended) == [0, 1]
    await assert_ended_once(app_client, held)
