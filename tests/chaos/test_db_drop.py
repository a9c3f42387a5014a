"""A dropped database connection is not a task's outcome: the step that hit it is retried and
the run goes on (or, when the database stays away, resumes later from its checkpoint)."""

from __future__ import annotations

import asyncio
import contextlib
import subprocess
import time
from pathlib import Path
from typing import Any

import asyncpg
import pytest
from sqlalchemy import event

from tests.chaos.support import ended, events, submit, tool_events
from tests.factories import run_enqueued
from tests.fakes.llm_server import ScriptedLLM, delayed, finish, tool_call
from tests.integration.workers import WorkerProcess, wait_for, workers_alive

pytestmark = pytest.mark.parametrize("db_url", ["postgres"], indirect=True)


class DropOnce:
    """Terminates the session's own PostgreSQL backend when the `nth` statement containing
    `marker` is about to run: the connection really drops under that statement."""

    def __init__(self, marker: str, nth: int = 1) -> None:
        self.marker, self.nth, self.seen, self.fired = marker, nth, 0, False

    def __call__(self, conn: Any, cursor: Any, statement: str, *_: Any) -> None:
        if self.fired or self.marker not in statement:
            return
        self.seen += 1
        if self.seen == self.nth:
            self.fired = True
            cursor.execute("SELECT pg_terminate_backend(pg_backend_pid())")


class DropOnDriver:
    """Terminates the run's connection just before the `nth` call of a statement the run sends
    on the driver's own connection (under SQLAlchemy's hooks): a one-statement step write
    (app.run.steps_postgres) or a lone end (app.tasks.lifecycle.complete_alone, or with the
    run's last step: app.run.steps_postgres.write_and_complete)."""

    def __init__(self, nth: int) -> None:
        self.nth, self.seen, self.fired = nth, 0, False

    def around(self, real: Any) -> Any:
        async def sent(driver: Any, *args: Any, **kwargs: Any) -> Any:
            self.seen += 1
            if self.seen == self.nth:
                self.fired = True
                with contextlib.suppress(Exception):
                    await driver.execute("SELECT pg_terminate_backend(pg_backend_pid())")
            return await real(driver, *args, **kwargs)
        return sent


NOTIFIES = {"notify": {"email": ["ann@example.com"]}}  # a task whose end is not alone


@pytest.mark.parametrize(("where", "marker", "nth", "body"), [
    ("write_step", None, 2, {}),  # a step's one-statement write
    ("write_step_journaled", "UPDATE tool_intent SET status", 1, {}),  # the general write
    ("take_messages", "UPDATE task_message SET delivered_at", 1, {}),
    # the lone end (with the run's last step when it can): one statement on the driver
    ("complete_alone", None, 1, {}),
    # the general end: task, slot and agent in one statement, then the event and the mail
    ("close_task", "finished_at = ", 1, NOTIFIES),
])
async def test_a_dropped_connection_does_not_fail_the_task(
    app_client, enqueued, llm: ScriptedLLM, monkeypatch: pytest.MonkeyPatch, where: str,
    marker: str | None, nth: int, body: dict[str, Any]
):
    from app.core.db import get_engine
    from app.run import runner, steps_postgres

    # given a task with a note in its inbox and a model that writes a file, then finishes
    llm.script(tool_call("write_file", path="output/a.txt", content="a"), finish("done"))
    task_id = int((await app_client.post("/tasks", json={"title": "t", "complexity": 2,
                                                         **body})).json()["id"])
    await app_client.post(f"/tasks/{task_id}/messages", json={"content": "please hurry"})
    drop: DropOnce | DropOnDriver
    if where == "write_step":
        drop = DropOnDriver(nth)
        monkeypatch.setattr(steps_postgres, "write", drop.around(steps_postgres.write))
    elif where == "complete_alone":  # alone, or with the run's last step
        drop = DropOnDriver(nth)
        monkeypatch.setattr(runner, "complete_alone", drop.around(runner.complete_alone))
        monkeypatch.setattr(steps_postgres, "write_and_complete",
                            drop.around(steps_postgres.write_and_complete))
    else:
        drop = DropOnce(marker, nth)
        event.listen(get_engine().sync_engine, "before_cursor_execute", drop)
    # when the worker's connection is terminated under that statement
    try:
        await run_enqueued(enqueued)
    finally:
        if isinstance(drop, DropOnce):
            event.remove(get_engine().sync_engine, "before_cursor_execute", drop)
    # then the step is retried and the task completes, once
    assert drop.fired, f"{where}: the statement never ran"
    task = (await app_client.get(f"/tasks/{task_id}")).json()
    assert task["status"] == "completed", task["error"]
    log = await events(app_client, task_id)
    ends = [e["data"]["status"] for e in log if e["type"] == "status"
            and e["data"]["status"] in ("completed", "failed", "cancelled")]
    assert ends == ["completed"]
    assert len(tool_events(log, "write_file")) == 1


async def test_a_kept_connection_closed_between_runs_is_replaced_before_use(
    app_client, enqueued, llm: ScriptedLLM, db_url: str, caplog: pytest.LogCaptureFixture
):
    from app.core import db

    # given a run that ended, its connection kept for the next run on this event loop
    await app_client.post("/tasks", json={"title": "first", "complexity": 1})
    assert await run_enqueued(enqueued) == ["ran"]
    [(_loop, kept, _since)] = db._spares.values()
    pid = (await kept.get_raw_connection()).driver_connection.get_server_pid()
    task_id = int((await app_client.post("/tasks", json={"title": "next", "complexity": 1})
                   ).json()["id"])
    # when the server closes it while the worker's event loop is idle (a restart, an idle
    # timeout; a worker's loop runs only while a task runs): here the loop is held, not
    # awaited, while another client terminates the connection and the server closes it
    terminated = subprocess.run(
        ["psql", db_url.replace("postgresql+asyncpg://", "postgresql://"), "-Atc",
         f"SELECT pg_terminate_backend({pid})"], capture_output=True, text=True, check=True)
    assert terminated.stdout.strip() == "t"
    time.sleep(0.3)
    caplog.set_level("WARNING", logger="app.core.transient")
    assert await run_enqueued(enqueued) == ["ran"]
    # then the next run took a fresh connection before sending anything: no statement failed
    # and was retried, and the task completed
    assert [r.getMessage() for r in caplog.records if "retry" in r.getMessage()] == []
    assert (await app_client.get(f"/tasks/{task_id}")).json()["status"] == "completed"
    [(_loop, now_kept, _since)] = db._spares.values()
    assert (await now_kept.get_raw_connection()).driver_connection.get_server_pid() != pid


async def _kill_backends(dsn: str, stop: asyncio.Event, every_s: float) -> int:
    """Terminate every other connection to the database every `every_s` seconds."""
    killed = 0
    conn = await asyncpg.connect(dsn)
    try:
        while not stop.is_set():
            await asyncio.sleep(every_s)
            killed += len(await conn.fetch(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"))
    finally:
        await conn.close()
    return killed


async def _quietly(predicate: Any) -> Any:
    with contextlib.suppress(Exception):  # our own reads lose their connection too
        return await predicate
    return None


@pytest.mark.slow
async def test_a_worker_under_connection_kills_completes_its_task(
    redis_broker, api, worker_env, llm: ScriptedLLM, db_url: str, tmp_path: Path
):
    # given a real worker and a task of eight steps
    steps = {"n": 0}

    def respond(_req: dict) -> dict:  # type: ignore[type-arg]
        steps["n"] += 1
        if steps["n"] <= 6:
            return delayed(0.3, tool_call("write_file", path=f"output/{steps['n']}.txt",
                                          content="x"))
        return delayed(0.3, finish("done"))

    llm.responder = respond
    worker = WorkerProcess(worker_env, tmp_path / "w.log")
    stop = asyncio.Event()
    try:
        await wait_for(workers_alive, timeout=60)
        task_id = await submit(api)
        # when every database connection is terminated every 50 ms while it runs
        dsn = db_url.replace("postgresql+asyncpg://", "postgresql://")
        killer = asyncio.ensure_future(_kill_backends(dsn, stop, 0.05))
        task = await wait_for(lambda: _quietly(ended(task_id)), timeout=90)
        stop.set()
        killed = await killer
    finally:
        stop.set()
        worker.stop()
    # then it completed (the kills hit it: they are retried, never its outcome)
    assert killed > 0
    assert task.status == "completed", task.error
