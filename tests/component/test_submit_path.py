"""POST /tasks, the submission path (issue 15: submission rate): what it stores, what it answers
and how many statements it costs, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio

import pytest
from sqlmodel import func, select

from app.core.db import session_scope
from app.models import Agent, Task
from tests.factories.connections import statements

pytestmark = pytest.mark.parametrize("db_url", ["sqlite", "postgres"], indirect=True)


async def test_a_submission_to_a_free_agent_is_answered_as_stored(app_client, enqueued):
    # given a free agent covering complexity 1
    # when a task is submitted
    resp = await app_client.post("/tasks", json={"title": "t", "complexity": 1})
    # then the answer is the stored task: assigned, its agent named, queued once
    body = resp.json()
    stored = (await app_client.get(f"/tasks/{body['id']}")).json()
    assert resp.status_code == 201
    assert body["status"] == "assigned" and body["agent"] is not None
    assert body == stored
    assert [task_id for task_id, _ in enqueued] == [body["id"]]
    # and its log is numbered from 1: created, then the assignment
    events = (await app_client.get(f"/tasks/{body['id']}/events")).json()["data"]
    assert [(e["seq"], e["type"]) for e in events] == [(1, "created"), (2, "status")]


async def test_a_submission_no_agent_can_serve_is_refused_and_not_stored(app_client, enqueued):
    # given agents that all stop below complexity 10
    async with session_scope() as session:
        for agent in (await session.exec(select(Agent))).all():
            agent.max_complexity = min(agent.max_complexity, 9)
            session.add(agent)
    # when a complexity-10 task is submitted
    resp = await app_client.post("/tasks", json={"title": "too hard", "complexity": 10})
    # then it is a 422 naming the field, and no task was stored or queued
    async with session_scope() as session:
        stored = (await session.exec(select(func.count()).select_from(Task))).one()
    assert resp.status_code == 422
    assert resp.json()["detail"][0]["loc"] == ["body", "complexity"]
    assert (stored, list(enqueued)) == (0, [])


async def test_a_submission_waits_as_pending_when_every_agent_is_busy(app_client, enqueued):
    # given every agent at its limit
    async with session_scope() as session:
        for agent in (await session.exec(select(Agent))).all():
            agent.active_tasks = agent.max_concurrent
            session.add(agent)
    # when a task is submitted
    resp = await app_client.post("/tasks", json={"title": "later", "complexity": 1})
    # then it is stored, pending, with no agent, and nothing was queued
    assert resp.status_code == 201
    assert (resp.json()["status"], resp.json()["agent"], list(enqueued)) == ("pending", None, [])


async def test_a_submission_to_a_free_agent_costs_seven_statements(app_client, enqueued):
    # given a warm API (the first request loads what it needs)
    await app_client.post("/tasks", json={"title": "warm", "complexity": 1})
    # when one more task is submitted
    with statements() as sent:
        resp = await app_client.post("/tasks", json={"title": "t", "complexity": 1})
    # then: the key's user (one join), the task's insert and its `created` event, the free
    # agents, the claim of one, the task's assignment (taking its event's number) and that
    # event; the agents are not read twice, the task not read back, its children and
    # notifications (a new task has none) not at all (it was 13 statements)
    assert resp.status_code == 201
    assert len(sent) <= 7, "\n".join(sent)


async def test_more_concurrent_submissions_than_pooled_connections_all_succeed(
    app_client, enqueued
):
    # given more clients at once than the database pool has connections (SQLite 5 + 10,
    # PostgreSQL 10 + 20), each request needing a connection for its key and one to write
    clients = 40
    # when they all submit at the same moment, half of them with an Idempotency-Key
    answers = await asyncio.gather(*(
        app_client.post("/tasks", json={"title": f"t{i}", "complexity": 1},
                        headers={"Idempotency-Key": f"k{i}"} if i % 2 else {})
        for i in range(clients)))
    # then every one is stored (none waited out the pool's timeout into a 503)
    assert [r.status_code for r in answers] == [201] * clients
    assert len({r.json()["id"] for r in answers}) == clients


async def test_more_concurrent_cancels_and_messages_than_pooled_connections_all_succeed(
    app_client, enqueued
):
    # given 40 tasks (more than the pool's connections), each given a message and cancelled
    # by its own client at the same moment
    ids = [(await app_client.post("/tasks", json={"title": f"t{i}", "complexity": 1})).json()["id"]
           for i in range(40)]
    # when the messages, then the cancels, all go at once
    notes = await asyncio.gather(*(
        app_client.post(f"/tasks/{i}/messages", json={"content": "hi"}) for i in ids))
    cancels = await asyncio.gather(*(app_client.post(f"/tasks/{i}/cancel") for i in ids))
    # then every one is answered (none waited out the pool's timeout into a 503)
    assert [r.status_code for r in notes] == [201] * len(ids)
    assert [r.status_code for r in cancels] == [200] * len(ids)
    assert {r.json()["status"] for r in cancels} == {"cancelled"}
