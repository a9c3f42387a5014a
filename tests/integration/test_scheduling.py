"""Assignment under contention, on SQLite and PostgreSQL, and cancel during a model call."""

from __future__ import annotations

import asyncio
import random

import pytest
from sqlalchemy import update
from sqlmodel import col, func, select

from app.core.db import session_factory, session_scope
from app.models import Agent, Task, TaskCreate, TaskEvent, TaskStatus, User
from app.submit import submit_task
from app.tasks.lifecycle import close_task
from app.tasks.scheduling import assign_pending
from tests.fakes.llm_server import delayed, finish

SLOTS = {"a1": 2, "a2": 1, "a3": 1}


async def _three_agents() -> None:
    async with session_scope() as session:
        await session.execute(update(Agent).values(status="disabled"))
        for name, slots in SLOTS.items():
            session.add(Agent(name=name, model="m", min_complexity=1, max_complexity=10,
                              max_concurrent=slots))


async def _check_invariants() -> None:
    async with session_factory()() as session:
        for agent in (await session.exec(select(Agent).where(col(Agent.name).in_(SLOTS)))).all():
            held = (await session.exec(select(func.count()).select_from(Task).where(
                Task.agent_id == agent.id, col(Task.slot_held).is_(True)))).one()
            assert held <= agent.max_concurrent, f"{agent.name} holds {held} slots"
            assert agent.active_tasks <= agent.max_concurrent


async def _submitter(owner: User, n: int) -> list[int]:
    ids = []
    for i in range(n):
        async with session_factory()() as session:
            task = await submit_task(session=session, owner=owner, task_in=TaskCreate(
                title=f"t{i}", complexity=random.randint(1, 10)))
            ids.append(task.id)
        await asyncio.sleep(0)
    return ids


async def _completer(stop: asyncio.Event) -> int:
    """Finish assigned tasks and re-assign, racing the submitters."""
    done = 0
    while not stop.is_set():
        async with session_scope() as session:
            running = (await session.exec(select(Task.id).where(
                Task.status == TaskStatus.assigned.value).limit(2))).all()
            for task_id in running:
                assert task_id is not None
                done += bool(await close_task(session, task_id, TaskStatus.completed,
                                              summary="ok"))
        async with session_scope() as session:
            await assign_pending(session)
        await _check_invariants()
        await asyncio.sleep(0.005)
    return done


@pytest.mark.parametrize("db_url", ["sqlite", "postgres"], indirect=True)
async def test_concurrent_submitters_never_overbook_agents(db, enqueued):
    # given three agents with 4 slots between them
    from app.main import startup

    await startup()  # seeds the shipped agents and the admin user
    await _three_agents()
    async with session_factory()() as session:
        owner = (await session.exec(select(User))).first()
    assert owner is not None
    # when 8 submitters race each other and a completer that frees and re-assigns slots
    stop = asyncio.Event()
    completer = asyncio.create_task(_completer(stop))
    batches = await asyncio.gather(*(_submitter(owner, 5) for _ in range(8)))
    for _ in range(400):
        async with session_factory()() as session:
            left = (await session.exec(select(func.count()).select_from(Task).where(
                col(Task.status).in_(["pending", "assigned"])))).one()
        if not left:
            break
        await asyncio.sleep(0.02)
    stop.set()
    await completer
    # then every task ran on some agent exactly once, and no agent ever exceeded its slots
    ids = [i for batch in batches for i in batch]
    assert len(ids) == 40
    async with session_factory()() as session:
        tasks = (await session.exec(select(Task).where(col(Task.id).in_(ids)))).all()
        assert {t.status for t in tasks} == {"completed"}
        assigned_events = (await session.exec(
            select(TaskEvent.task_id, func.count()).where(
                TaskEvent.type == "status", col(TaskEvent.task_id).in_(ids))
            .group_by(col(TaskEvent.task_id)))).all()
        # one "assigned" and one "completed" status event per task, never two assignments
        assert all(count == 2 for _tid, count in assigned_events)
        agents = (await session.exec(select(Agent).where(col(Agent.name).in_(SLOTS)))).all()
        assert all(a.active_tasks == 0 for a in agents)
        assert sum(a.tasks_done for a in agents) == 40


async def test_cancel_during_model_call_frees_agent_and_assigns_next(app_client, enqueued, llm):
    # given a single-slot agent busy on a task whose model call takes 30 s
    agents = (await app_client.get("/agents")).json()["data"]
    junior = next(a for a in agents if a["name"] == "junior")
    await app_client.patch(f"/agents/{junior['id']}", json={"max_concurrent": 1})
    llm.script(delayed(30, finish("slow")))
    first = (await app_client.post("/tasks", json={"title": "slow", "complexity": 1})).json()
    second = (await app_client.post("/tasks", json={"title": "next", "complexity": 1})).json()
    assert first["status"] == "assigned" and second["status"] == "pending"
    task_id, _queue = enqueued.pop(0)
    running = asyncio.create_task(run_enqueued_one(task_id))
    for _ in range(200):
        if llm.requests:
            break
        await asyncio.sleep(0.05)
    # when the running task is cancelled
    loop = asyncio.get_running_loop()
    started = loop.time()
    resp = await app_client.post(f"/tasks/{task_id}/cancel")
    assert resp.json()["status"] == "cancelled"
    await asyncio.wait_for(running, timeout=10)
    # then the run stopped within seconds, not 30, and the waiting task got the agent
    assert loop.time() - started < 5
    nxt = (await app_client.get(f"/tasks/{second['id']}")).json()
    assert nxt["status"] == "assigned" and nxt["agent"] == "junior"
    events = (await app_client.get(f"/tasks/{task_id}/events")).json()["data"]
    assert "stopped" in [e["type"] for e in events]


async def run_enqueued_one(task_id: int) -> str:
    from app.run.runner import run_task

    return await run_task(task_id, owner="cancel-test")
