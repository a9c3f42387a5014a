"""A worker never leaves the embedded SQLite database write-locked: not when it is SIGKILLed in
the middle of writing (the kernel drops a dead process's locks; another process writes within a
second), and not when a task's run leaves a coroutine suspended inside a write transaction (a
lease keeper told to stop but not awaited, a run abandoned when its time ran out): the worker's
event loop does not run between tasks, so that transaction stayed open, and the lock held, until
the process's next task (worker.process.run_coroutine now cancels and awaits such leftovers)."""

from __future__ import annotations

import asyncio
import os
import signal
import sqlite3
import time
from pathlib import Path

import pytest

from tests.chaos.support import submit
from tests.fakes.llm_server import ScriptedLLM, finish, tool_call
from tests.integration.workers import WorkerProcess, wait_for, workers_alive


def _write_within(db: Path, seconds: float) -> float:
    """Take SQLite's write lock and commit, waiting at most `seconds`; returns the wait."""
    started = time.monotonic()
    conn = sqlite3.connect(db, timeout=seconds, isolation_level=None)
    try:
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("UPDATE agent SET status = status")
        conn.execute("COMMIT")
    finally:
        conn.close()
    return time.monotonic() - started


def _children(pid: int) -> list[int]:
    found = []
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                stat = Path(f"/proc/{entry}/stat").read_text()
            except OSError:
                continue
            if int(stat.rsplit(")", 1)[1].split()[1]) == pid:
                found.append(int(entry))
    return found


@pytest.mark.slow
@pytest.mark.parametrize("victim", ["group", "child"])
async def test_a_worker_killed_mid_write_leaves_no_write_lock(
    api, worker_env, llm: ScriptedLLM, tmp_path: Path, victim: str
):
    # given a worker writing as fast as it can: a model that writes a file at every step
    llm.responder = lambda req: (tool_call("write_file", path="output/a.txt", content="x" * 5000)
                                 if len(req["messages"]) < 400 else finish("done"))
    worker = WorkerProcess(worker_env, tmp_path / "w.log")
    db = Path(worker_env["TASKBENCH_DATABASE_URL"].split(":///", 1)[1])
    try:
        await wait_for(workers_alive, timeout=60)
        for _ in range(2):
            await submit(api, budget={"max_steps": 500})
        await asyncio.sleep(3)
        # when it is SIGKILLed mid-run (the whole group, or the pool child running the task)
        if victim == "group":
            worker.kill()
        else:
            for child in _children(worker.proc.pid):
                os.kill(child, signal.SIGKILL)
        # then another process writes within a second
        waited = await asyncio.to_thread(_write_within, db, 1.0)
    finally:
        worker.stop() if worker.proc.poll() is None else worker.kill()
    assert waited < 1.0


def test_a_coroutine_left_inside_a_transaction_does_not_keep_the_write_lock(env):
    from sqlalchemy import update

    from app.core.db import connection_scope
    from app.models import Agent, table
    from worker.process import run_coroutine

    db = Path(env["TASKBENCH_DATABASE_URL"].split(":///", 1)[1])

    async def run() -> str:
        async def keeper() -> None:  # in its write transaction when the run returns
            async with connection_scope() as conn:
                await conn.execute(update(table(Agent)).values(status=Agent.status))
                await asyncio.Event().wait()  # an await that does not return before the end

        asyncio.ensure_future(keeper())
        await asyncio.sleep(0.3)
        return "ran"

    # given a task's run that returns while a coroutine it started holds the write lock
    assert run_coroutine(run()) == "ran"
    # when another process writes, then it gets the lock within a second
    assert _write_within(db, 1.0) < 1.0
