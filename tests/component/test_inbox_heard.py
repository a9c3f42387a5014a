"""On PostgreSQL a run hears its inbox (LISTEN/NOTIFY, app.core.listen) and its step writes go
out with the next model call (app.run.context): a message is still in the very next request,
the write is durable before the reply's tools run, and a lost listener falls back to reading."""

from __future__ import annotations

import asyncio
import contextlib
import threading
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import asyncpg
import pytest

from app.core import listen
from app.models import INBOX_CHANNEL
from tests.factories import run_enqueued
from tests.factories.loop import Router, events_of
from tests.fakes.llm_server import finish, last_user_text, tool_call

pytestmark = pytest.mark.parametrize("db_url", ["postgres"], indirect=True)
WAIT_S = 10.0


def held(release: threading.Event, reply: Any) -> Any:
    """A reply the fake model sends only once `release` is set."""
    def answer(_request: dict[str, Any]) -> Any:
        release.wait(WAIT_S)
        return reply
    return answer


async def requests_reach(llm: Any, count: int) -> None:
    async def wait() -> None:
        while len(llm.requests) < count:
            await asyncio.sleep(0.01)
    await asyncio.wait_for(wait(), WAIT_S)


async def run_held(app_client: Any, enqueued: Any, llm: Any, title: str, *replies: Any,
                   at: int) -> tuple[int, threading.Event, asyncio.Future[Any]]:
    """A task whose model gives `replies`, the one at index `at` held: its id, the release of
    that reply, and its run, under way once the held call has arrived."""
    release = threading.Event()
    script = list(replies)
    script[at] = held(release, script[at])
    llm.responder = Router().script(title, *script)
    task_id = (await app_client.post("/tasks", json={"title": title, "complexity": 1})
               ).json()["id"]
    run = asyncio.ensure_future(run_enqueued(enqueued))
    await requests_reach(llm, at + 1)
    return task_id, release, run


async def second_call_held(app_client: Any, enqueued: Any, llm: Any, title: str
                           ) -> tuple[int, threading.Event, asyncio.Future[Any]]:
    """A task whose first reply lists files and whose second model call (sent with the first
    step's write) is held."""
    return await run_held(app_client, enqueued, llm, title, tool_call("list_files"),
                          tool_call("list_files"), at=1)


@contextlib.asynccontextmanager
async def row_locked(db_url: str, task_id: int, lock: str) -> AsyncIterator[Any]:
    """The task's row locked (`FOR <lock>`) by another connection while the block runs; that
    connection, for reads beside the lock."""
    blocker = await asyncpg.connect(db_url.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        async with blocker.transaction():
            await blocker.execute(f"SELECT 1 FROM task WHERE id = $1 FOR {lock}", task_id)
            yield blocker
    finally:
        await blocker.close()


def the_listener() -> listen.Listener:
    loop = asyncio.get_running_loop()
    found = [v for v in listen._listeners.values()
             if v.loop is loop and v.channel == INBOX_CHANNEL]
    assert len(found) == 1
    return found[0]


async def test_a_message_posted_while_a_write_goes_with_the_call_is_in_the_next_request(
    app_client, enqueued, llm
):
    # given a task whose second model call (sent with the first step's write) is held
    task_id, release, run = await second_call_held(app_client, enqueued, llm, "chat")
    # when a person posts a message while the model is thinking
    posted = await app_client.post(f"/tasks/{task_id}/messages",
                                   json={"content": "Use British spelling, please."})
    assert posted.status_code == 201
    release.set()
    await run
    # then the very next request carries it (the write that went with the held call had
    # looked at the inbox before the message was posted: only the notification told)
    assert "British" not in str(llm.requests[1]["messages"])
    assert "Use British spelling, please." in last_user_text(llm.requests[2])
    assert len(await events_of(app_client, task_id, "message_delivered")) == 1
    task = (await app_client.get(f"/tasks/{task_id}")).json()
    assert task["status"] == "completed", task


async def test_a_step_write_goes_out_with_the_call_and_lands_before_its_tools_run(
    app_client, enqueued, llm, db_url
):
    # given a task whose first reply is held, and whose second writes a file
    task_id, release, run = await run_held(
        app_client, enqueued, llm, "overlap", tool_call("list_files"),
        tool_call("write_file", path="output/after.txt", content="written"), at=0)
    # when the task's row is locked elsewhere, so that the first step's write cannot commit
    async with row_locked(db_url, task_id, "UPDATE") as blocker:
        workspace = Path(await blocker.fetchval("SELECT workspace FROM task WHERE id = $1",
                                                task_id))
        release.set()
        # then the next model call is made all the same, the write still waiting on the lock
        await requests_reach(llm, 2)
        await asyncio.sleep(0.3)
        # and the reply's tool has not run: its effect waits for the write before it
        assert not (workspace / "output" / "after.txt").exists()
        steps = await blocker.fetchval("SELECT steps FROM task WHERE id = $1", task_id)
    await run
    # once the write lands, everything is there, in order, exactly once
    assert steps == 0
    assert (workspace / "output" / "after.txt").read_text() == "written"
    task = (await app_client.get(f"/tasks/{task_id}")).json()
    assert task["status"] == "completed", task
    events = await events_of(app_client, task_id)
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    calls = [e["data"]["tool"] for e in events if e["type"] == "tool_call"]
    assert calls[:2] == ["list_files", "write_file"]


async def test_a_step_whose_call_had_an_effect_is_written_before_the_next_call(
    app_client, enqueued, llm, db_url
):
    # given a task whose first reply (held) writes a file, then lists files
    task_id, release, run = await run_held(
        app_client, enqueued, llm, "effect",
        tool_call("write_file", path="output/a.txt", content="a"), tool_call("list_files"), at=0)
    # when the task's row is locked elsewhere against updates (not against the journal's row
    # that refers to it) once the reply is on its way
    async with row_locked(db_url, task_id, "NO KEY UPDATE"):
        release.set()
        await asyncio.sleep(0.5)
        # then the model is not asked again while the step that wrote the file is unwritten
        # (a worker dying during that call would leave the write to be reconciled)
        asked = len(llm.requests)
    await run
    assert asked == 1
    assert (await app_client.get(f"/tasks/{task_id}")).json()["status"] == "completed"
    calls = [e["data"]["tool"] for e in await events_of(app_client, task_id, "tool_call")]
    assert calls[:2] == ["write_file", "list_files"]


async def test_a_lost_listener_is_not_trusted_and_the_inbox_is_read(
    app_client, enqueued, llm
):
    # given a task whose second model call is held, its run listening to its inbox
    task_id, release, run = await second_call_held(app_client, enqueued, llm, "lost")
    heard = the_listener()
    epoch = heard.epoch
    # when the listener's connection is cut (a restart, a proxy's idle timeout) and a message
    # is posted meanwhile, its notification going nowhere
    admin = await asyncpg.connect(heard.db_url.replace("postgresql+asyncpg://",
                                                       "postgresql://"))
    try:
        assert await admin.fetchval("SELECT pg_terminate_backend($1)",
                                    heard._conn.get_server_pid())
    finally:
        await admin.close()

    async def lost() -> None:
        while heard.live:
            await asyncio.sleep(0.01)
    await asyncio.wait_for(lost(), WAIT_S)
    await app_client.post(f"/tasks/{task_id}/messages", json={"content": "Metric units."})
    release.set()
    await run
    # then the run stopped trusting what it heard: the next request carries the message
    assert "Metric units." in last_user_text(llm.requests[2])
    assert (await app_client.get(f"/tasks/{task_id}")).json()["status"] == "completed"
    # and the next run listens again, on a new connection
    llm.responder = Router().script("again", finish("designed"))
    await app_client.post("/tasks", json={"title": "again", "complexity": 1})
    await run_enqueued(enqueued)
    assert heard.live and heard.epoch == epoch + 1
