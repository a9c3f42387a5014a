"""Redis down when a task is submitted (issue 17, #5 and #6): the answer is 201 for a task that
was stored, a client's retry with the same Idempotency-Key gets that task (never a second one),
no agent slot waits on a message that was never sent, and the task is queued once Redis is
back — by the sweep's own step, within one sweep of recovery."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import httpx
import pytest
import redis

from tests.factories import auth

pytestmark = pytest.mark.skipif(not shutil.which("redis-server"), reason="needs redis-server")


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _start_redis(port: int, folder: Path) -> subprocess.Popen[bytes]:
    proc = subprocess.Popen(["redis-server", "--port", str(port), "--save", "",
                             "--appendonly", "no", "--dir", str(folder)],
                            stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while True:
        try:
            if redis.Redis(port=port).ping():
                return proc
        except redis.ConnectionError:
            assert time.monotonic() < deadline, "redis-server did not start"
            time.sleep(0.05)


async def test_a_submission_while_redis_is_down_is_stored_once_and_queued_later(
        db, monkeypatch, tmp_path) -> None:
    from sqlmodel import select

    from app.core.config import reset_settings
    from app.core.db import session_scope
    from app.main import create_app, startup
    from app.models import Agent
    from app.tasks.enqueue import assign_and_enqueue

    # given an API whose broker is a Redis that is down
    port = _free_port()
    monkeypatch.setenv("TASKBENCH_BROKER_URL", f"redis://127.0.0.1:{port}/0")
    reset_settings()
    app = create_app(sweeper=False)
    await startup()
    headers = {**auth(os.environ["TASKBENCH_ADMIN_API_KEY"]), "Idempotency-Key": "k-1"}
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="http://test/api/v1", headers=headers) as client:
        # when a task is submitted
        first = await client.post("/tasks", json={"title": "t", "complexity": 2})
        # then it was stored and the answer says so (201, not 500), waiting as pending
        assert first.status_code == 201, first.text
        task = first.json()
        assert task["status"] == "pending" and task["agent"] is None
        events = (await client.get(f"/tasks/{task['id']}/events")).json()["data"]
        assert "the broker did not take the task" in events[-1]["data"]["reason"]
        # and no agent slot is held by the message that was never sent
        async with session_scope() as session:
            agents = (await session.exec(select(Agent))).all()
        assert sum(a.active_tasks for a in agents) == 0

        # when the client retries (it never saw an answer, say) with the same key
        again = await client.post("/tasks", json={"title": "t", "complexity": 2})
        # then it gets the same task, marked as a replay; a second task was never made
        assert again.status_code == 200 and again.json()["id"] == task["id"]
        assert again.headers["Idempotent-Replayed"] == "true"
        listed = (await client.get("/tasks")).json()["data"]
        assert [t["id"] for t in listed] == [task["id"]]
        # and the same key with another body is refused, naming the header
        other = await client.post("/tasks", json={"title": "another", "complexity": 2})
        assert other.status_code == 422
        assert other.json()["detail"][0]["loc"] == ["header", "Idempotency-Key"]

        # when Redis comes back and the sweep runs its assignment step
        server = _start_redis(port, tmp_path)
        try:
            assert await assign_and_enqueue() == 1
            # then the task is assigned and its message is on the queue, once
            shown = (await client.get(f"/tasks/{task['id']}")).json()
            assert shown["status"] == "assigned"
            assert redis.Redis(port=port).llen("taskbench") == 1
        finally:
            server.terminate()
            server.wait(10)


async def test_two_racing_submissions_with_one_key_make_one_task(app_client) -> None:
    import asyncio

    async def post():  # type: ignore[no-untyped-def]
        return await app_client.post("/tasks", json={"title": "race", "complexity": 2},
                                     headers={"Idempotency-Key": "same"})

    answers = await asyncio.gather(*(post() for _ in range(5)))
    ids = {a.json()["id"] for a in answers}
    assert all(a.status_code in (200, 201) for a in answers), [a.text for a in answers]
    assert len(ids) == 1


@pytest.mark.parametrize("key", ["", "x" * 201, "bad\x01key"])
async def test_a_malformed_idempotency_key_is_a_422_naming_the_header(app_client, key) -> None:
    resp = await app_client.post("/tasks", json={"title": "t", "complexity": 2},
                                 headers={"Idempotency-Key": key})
    assert resp.status_code == 422, resp.text
    assert resp.json()["detail"][0]["loc"][:2] == ["header", "idempotency-key"] or \
        resp.json()["detail"][0]["loc"][:2] == ["header", "Idempotency-Key"]
