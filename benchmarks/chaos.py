"""Chaos experiments, short versions of tests/chaos, printed as one table:
submitted / completed / failed / duplicated effects / recovery.

1. sigkill   (SQLite + embedded broker, default lease and sweep): each task appends a line,
             sends an email and starts a slow command in one reply; the worker running it is
             SIGKILLed while the command runs and a second worker takes over. Duplicated
             effects = extra lines, extra emails, extra command runs. Recovery = kill → the
             task's second `started` event.
2. db-drop   (PostgreSQL + Redis): tasks of six steps while every database connection is
             terminated every 50 ms. Duplicated effects = ends or writes recorded twice.
3. sqlite-lock (SQLite): a worker writing steps as fast as it can is SIGKILLed; recovery = how
             long until another process holds the write lock and commits.
4. redis-down (SQLite + a Redis broker of its own): Redis is stopped, tasks are submitted
             (stored, handed back to pending), Redis starts again after `--outage` s. Recovery =
             Redis back → the last task's first `started` event. Duplicated = tasks started
             twice or created twice.
5. smtp-down  (SQLite + embedded broker + a real SMTP server): tasks that email their owner end
             while the server is down; it comes back after `--outage` s. Recovery = server back →
             the last email received. Duplicated = emails received more than once.
6. fork-bomb  (SQLite + embedded broker, one worker with 2 pool processes): one task fork-bombs
             (as its own uid, in its own cgroup) while `--tasks` normal tasks run their commands
             beside it; then one more task runs after it. Every task must complete; the normal
             commands must really run. Recovery = the bomb's end → the next task completed.

    python -m benchmarks.chaos [--tasks 3] [--outage 5] [--only redis-down,smtp-down,fork-bomb]
    python -m benchmarks.chaos --long [--tasks 200] [--only sigkill-pg,sigkill-embedded,...]

Needs Redis (TASKBENCH_TEST_REDIS, default DB 15) and PostgreSQL on 127.0.0.1, like the tests.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import re
import sqlite3
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import redis

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.factories import base_env, create_pg_database, drop_pg_database  # noqa: E402
from tests.fakes.llm_server import ScriptedLLM, delayed, finish, tool_call, tool_calls  # noqa: E402
from tests.integration.workers import WorkerProcess, wait_for, workers_alive  # noqa: E402

REDIS = os.environ.get("TASKBENCH_TEST_REDIS", "redis://127.0.0.1:6379/15")
TUNED = ("TASKBENCH_LEASE_SECONDS", "TASKBENCH_SWEEP_INTERVAL_S", "TASKBENCH_WORKER_HEARTBEAT_S")
OWNER = "owner@example.com"


@dataclass
class Row:
    name: str
    submitted: int = 0
    completed: int = 0
    failed: int = 0
    dups: int = 0
    recovery: list[float] = field(default_factory=list)
    note: str = ""

    def line(self) -> str:
        rec = (f"median {statistics.median(self.recovery):.2f} s, max {max(self.recovery):.2f} s"
               if self.recovery else "-")
        return (f"| {self.name:<11} | {self.submitted:>9} | {self.completed:>9} | {self.failed:>6}"
                f" | {self.dups:>11} | {rec:<28} | {self.note}")


def _token(req: dict[str, Any]) -> str:
    for m in req["messages"]:
        found = re.search(r"chaos-\d+", str(m.get("content")))
        if found:
            return found.group(0)
    return "?"


def _results(req: dict[str, Any]) -> int:
    return sum(1 for m in req["messages"] if m["role"] == "tool")


async def _env(tmp: Path, db_url: str, llm: ScriptedLLM, broker: str) -> dict[str, str]:
    from app.core.config import reset_settings
    from app.ops.migrate import upgrade

    env = {**base_env(tmp, db_url, llm.url), "TASKBENCH_BROKER_URL": broker}
    for key in TUNED:  # the defaults are what is measured
        env.pop(key, None)
        os.environ.pop(key, None)
    os.environ.update(env)
    reset_settings()
    await asyncio.to_thread(upgrade, db_url)
    return env


async def _owner() -> Any:
    from sqlmodel import select

    from app.core.db import session_scope
    from app.main import startup
    from app.models import User

    await startup()
    async with session_scope() as session:
        return (await session.exec(select(User))).first()


async def _submit(owner: Any, title: str, **extra: Any) -> int:
    from app.core.db import session_factory
    from app.models import TaskCreate
    from app.submit import submit_task

    async with session_factory()() as session:
        task = await submit_task(session=session, owner=owner,
                                 task_in=TaskCreate(title=title, complexity=2, **extra))
    assert task.id is not None
    return task.id


async def _task(task_id: int) -> Any:
    from app.core.db import session_factory
    from app.models import Task

    with contextlib.suppress(Exception):  # db-drop kills our connections too
        async with session_factory()() as session:
            return await session.get(Task, task_id)
    return None


async def _ended(task_id: int) -> Any:
    task = await _task(task_id)
    return task if task is not None and task.status in ("completed", "failed",
                                                        "cancelled") else None


async def _events(task_id: int, type_: str) -> list[Any]:
    from sqlmodel import col, select

    from app.core.db import session_factory
    from app.models import TaskEvent

    async with session_factory()() as session:
        return list((await session.exec(select(TaskEvent).where(
            TaskEvent.task_id == task_id, TaskEvent.type == type_).order_by(
            col(TaskEvent.seq)))).all())


async def _count_workers(n: int) -> bool:
    return await workers_alive() >= n


async def sigkill(tasks: int, llm: ScriptedLLM) -> Row:
    tmp = Path(tempfile.mkdtemp())
    env = await _env(tmp, f"sqlite+aiosqlite:///{tmp / 'taskbench.db'}", llm, "")
    owner = await _owner()
    slow: set[str] = set()

    def respond(req: dict[str, Any]) -> dict[str, Any]:
        token, done = _token(req), _results(req)
        if done == 0:
            return tool_call("write_file", path="output/log.txt", content="start\n")
        if done == 1:
            first = token not in slow
            slow.add(token)
            code = ("open('output/runs.txt', 'a').write('x')\n"
                    f"import time; time.sleep({60 if first else 0})\n")
            return tool_calls(
                ("insert_lines", {"path": "output/log.txt", "line": 1, "text": "entry"}),
                ("send_email", {"to": OWNER, "subject": f"progress {token}", "body": "b"}),
                ("run_python", {"code": code}))
        return finish("done")

    llm.responder = respond
    row = Row("sigkill", note="kill while a reply's 3rd effect runs; 2nd worker resumes")
    worker = WorkerProcess(env, tmp / "w0.log")
    await wait_for(workers_alive, timeout=120)
    try:
        for i in range(tasks):
            task_id = await _submit(owner, f"chaos-{i}", notify={"email": [OWNER]})
            row.submitted += 1

            async def running(tid: int = task_id) -> bool:
                task = await _task(tid)
                return bool(task and task.workspace
                            and (Path(task.workspace) / "output" / "runs.txt").is_file())

            await wait_for(running, timeout=120, interval=0.05)
            spare = WorkerProcess(env, tmp / f"w{i + 1}.log")
            await wait_for(lambda: _count_workers(2), timeout=120)
            worker.kill()
            killed = datetime.now(UTC)
            task = await wait_for(lambda tid=task_id: _ended(tid), timeout=180)
            worker = spare
            starts = await _events(task_id, "started")
            if len(starts) >= 2:
                row.recovery.append((starts[1].created_at.replace(tzinfo=UTC)
                                     - killed).total_seconds())
            row.completed += task.status == "completed"
            row.failed += task.status != "completed"
            root = Path(task.workspace)
            lines = (root / "output" / "log.txt").read_text().count("entry")
            runs = len((root / "output" / "runs.txt").read_text())
            mails = sum(1 for p in (tmp / "var" / "outbox").glob("*.eml")
                        if f"progress chaos-{i}" in p.read_text(errors="replace"))
            row.dups += max(lines - 1, 0) + max(runs - 1, 0) + max(mails - 1, 0)
    finally:
        worker.stop()
    return row


async def db_drop(tasks: int, llm: ScriptedLLM) -> Row:
    db_url = await asyncio.to_thread(create_pg_database)
    tmp = Path(tempfile.mkdtemp())
    redis.Redis.from_url(REDIS).flushdb()
    row = Row("db-drop", note="every DB connection terminated every 50 ms")
    try:
        env = await _env(tmp, db_url, llm, REDIS)
        owner = await _owner()

        def respond(req: dict[str, Any]) -> dict[str, Any]:
            done = _results(req)
            if done < 6:
                return delayed(0.2, tool_call("write_file", path=f"output/{done}.txt",
                                              content="x"))
            return delayed(0.2, finish("done"))

        llm.responder = respond
        worker = WorkerProcess(env, tmp / "w.log")
        stop = asyncio.Event()
        dsn = db_url.replace("postgresql+asyncpg://", "postgresql://")
        try:
            await wait_for(workers_alive, timeout=120)
            ids = []
            for i in range(tasks):
                ids.append(await _submit(owner, f"chaos-{i}"))
                row.submitted += 1
            killer = asyncio.ensure_future(_kill_backends(dsn, stop))
            ended = [await wait_for(lambda tid=tid: _ended(tid), timeout=300) for tid in ids]
            stop.set()
            killed = await killer
        finally:
            stop.set()
            worker.stop()
        from app.core.db import dispose_engines

        await dispose_engines()  # connections the killer left dead in the pool
        for task in ended:
            row.completed += task.status == "completed"
            row.failed += task.status != "completed"
            statuses = [e.data.get("status") for e in await _events(task.id, "status")]
            ends = [s for s in statuses if s in ("completed", "failed", "cancelled")]
            writes = [e for e in await _events(task.id, "tool_call")
                      if e.data.get("tool") == "write_file"]
            row.dups += max(len(ends) - 1, 0) + max(len(writes) - 6, 0)
        row.note += f" ({killed} terminated)"
    finally:
        from app.core.db import dispose_engines

        await dispose_engines()
        await asyncio.to_thread(drop_pg_database, db_url)
    return row


async def _kill_backends(dsn: str, stop: asyncio.Event) -> int:
    killed, conn = 0, await asyncpg.connect(dsn)
    try:
        while not stop.is_set():
            await asyncio.sleep(0.05)
            killed += len(await conn.fetch(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()"))
    finally:
        await conn.close()
    return killed


def _write_wait(db: Path, limit: float) -> float:
    started = time.monotonic()
    conn = sqlite3.connect(db, timeout=limit, isolation_level=None)
    try:
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("UPDATE agent SET status = status")
        conn.execute("COMMIT")
    finally:
        conn.close()
    return time.monotonic() - started


async def sqlite_lock(tasks: int, llm: ScriptedLLM) -> Row:
    tmp = Path(tempfile.mkdtemp())
    db = tmp / "taskbench.db"
    env = await _env(tmp, f"sqlite+aiosqlite:///{db}", llm, "")
    owner = await _owner()
    llm.responder = lambda req: (tool_call("write_file", path="output/a.txt", content="x" * 5000)
                                 if _results(req) < 200 else finish("done"))
    row = Row("sqlite-lock", note="SIGKILL mid-write; completed = another process wrote; "
              "recovery = its wait for the write lock")
    for i in range(tasks):
        worker = WorkerProcess(env, tmp / f"w{i}.log")
        try:
            await wait_for(workers_alive, timeout=120)
            await _submit(owner, f"chaos-{i}", budget={"max_steps": 400})
            row.submitted += 1
            await asyncio.sleep(2.5)
            worker.kill()
            try:
                row.recovery.append(await asyncio.to_thread(_write_wait, db, 30.0))
                row.completed += 1  # here: another process's write went through
            except sqlite3.OperationalError:
                row.failed += 1
                row.recovery.append(30.0)
        finally:
            if worker.proc.poll() is None:
                worker.stop()
    return row


def _free_port() -> int:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _redis_server(port: int, folder: Path) -> Any:
    import subprocess

    proc = subprocess.Popen(["redis-server", "--port", str(port), "--save", "", "--appendonly",
                             "no", "--dir", str(folder)], stdout=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        with contextlib.suppress(redis.ConnectionError):
            if redis.Redis(port=port).ping():
                return proc
        time.sleep(0.05)
    raise RuntimeError("redis-server did not start")


async def redis_down(tasks: int, llm: ScriptedLLM, outage: float) -> Row:
    tmp = Path(tempfile.mkdtemp())
    port = _free_port()
    server = _redis_server(port, tmp)
    env = await _env(tmp, f"sqlite+aiosqlite:///{tmp / 'taskbench.db'}", llm,
                     f"redis://127.0.0.1:{port}/0")
    owner = await _owner()
    llm.responder = lambda req: finish("done")
    row = Row("redis-down", note=f"tasks submitted while Redis is down {outage:g} s")
    worker = WorkerProcess(env, tmp / "w0.log")
    ids: list[int] = []
    try:
        await wait_for(workers_alive, timeout=120)
        server.terminate()
        server.wait(10)
        for i in range(tasks):
            ids.append(await _submit(owner, f"chaos-{i}"))
            row.submitted += 1
        await asyncio.sleep(outage)
        server = _redis_server(port, tmp)
        back = datetime.now(UTC)
        for task_id in ids:
            task = await wait_for(lambda tid=task_id: _ended(tid), timeout=180)
            row.completed += task.status == "completed"
            row.failed += task.status != "completed"
            starts = await _events(task_id, "started")
            row.dups += max(len(starts) - 1, 0)
            if starts:
                row.recovery.append((starts[0].created_at.replace(tzinfo=UTC)
                                     - back).total_seconds())
        row.recovery = [max(row.recovery)] if row.recovery else []
    finally:
        worker.stop()
        server.terminate()
        server.wait(10)
    return row


async def smtp_down(tasks: int, llm: ScriptedLLM, outage: float) -> Row:
    from aiosmtpd.controller import Controller

    received: list[str] = []

    class Inbox:
        async def handle_DATA(self, server: Any, session: Any, envelope: Any) -> str:  # noqa: N802
            received.append(envelope.content.decode(errors="replace"))
            return "250 OK"

    tmp = Path(tempfile.mkdtemp())
    port = _free_port()
    env = await _env(tmp, f"sqlite+aiosqlite:///{tmp / 'taskbench.db'}", llm, "")
    env["TASKBENCH_SMTP_URL"] = f"smtp://127.0.0.1:{port}?starttls=0"
    env["TASKBENCH_EAGER_REPORTS"] = "false"
    os.environ.update(env)
    from app.core.config import reset_settings

    reset_settings()
    owner = await _owner()
    llm.responder = lambda req: finish("done")
    row = Row("smtp-down", note=f"task-end emails owed while SMTP is down {outage:g} s")
    worker = WorkerProcess(env, tmp / "w0.log")
    controller = None
    try:
        await wait_for(workers_alive, timeout=120)
        ids = [await _submit(owner, f"chaos-{i}", notify={"email": [OWNER]})
               for i in range(tasks)]
        row.submitted = len(ids)
        for task_id in ids:
            task = await wait_for(lambda tid=task_id: _ended(tid), timeout=180)
            row.completed += task.status == "completed"
            row.failed += task.status != "completed"
        await asyncio.sleep(outage)
        controller = Controller(Inbox(), hostname="127.0.0.1", port=port)
        controller.start()
        back = time.monotonic()
        deadline = back + 120
        while len(received) < tasks and time.monotonic() < deadline:
            await asyncio.sleep(0.1)
        row.recovery = [time.monotonic() - back] if len(received) >= tasks else []
        await asyncio.sleep(3)  # anything sent twice would arrive now
        ids_seen = [re.search(r"(?im)^message-id:\s*(\S+)", m) for m in received]
        keys = [m.group(1) for m in ids_seen if m]
        row.dups = len(keys) - len(set(keys))
        row.note += f"; {len(received)} of {tasks} emails arrived, {len(set(keys))} Message-IDs"
    finally:
        worker.stop()
        if controller:
            controller.stop()
    return row


BOMB = ("import os,time\np=os.getpid()\nn=0\nfor _ in range(300):\n    try:\n        os.fork()\n"
        "    except OSError:\n        n+=1\n        time.sleep(0.01)\ntime.sleep(5)\n"
        "if os.getpid()==p: print('forks refused', n)\n")


async def fork_bomb(tasks: int, llm: ScriptedLLM) -> Row:
    import shlex

    tmp = Path(tempfile.mkdtemp())
    env = await _env(tmp, f"sqlite+aiosqlite:///{tmp / 'taskbench.db'}", llm, "")
    owner = await _owner()

    def respond(req: dict[str, Any]) -> dict[str, Any]:
        text = " ".join(str(m.get("content") or "") for m in req["messages"])
        if any(m["role"] == "tool" for m in req["messages"]):
            return finish("done")
        if "chaos-bomb" in text:
            return tool_call("run_command", command=f"python3 -c {shlex.quote(BOMB)}",
                             timeout=12)
        return {**tool_call("run_command", command="python3 -c 'print(6*7)'"), "delay": 2.0}

    llm.responder = respond
    row = Row("fork-bomb", note=f"1 task fork-bombs beside {tasks} others, 1 more after")
    worker = WorkerProcess(env, tmp / "w0.log", concurrency=2)
    try:
        await wait_for(workers_alive, timeout=120)
        bomb = await _submit(owner, "chaos-bomb")
        others = [await _submit(owner, f"chaos-{i}") for i in range(tasks)]
        ended = {t: await wait_for(lambda t=t: _ended(t), timeout=180) for t in [bomb, *others]}
        bomb_end = datetime.now(UTC)
        after = await _submit(owner, "chaos-after")
        ended[after] = await wait_for(lambda: _ended(after), timeout=120)
        row.recovery = [(datetime.now(UTC) - bomb_end).total_seconds()]
        row.submitted = len(ended)
        for task_id, task in ended.items():
            ran = task_id == bomb or any(
                "42" in str(e.data.get("output", "")) for e in await _events(task_id, "tool_call"))
            row.completed += task.status == "completed" and ran
            row.failed += task.status != "completed" or not ran
    finally:
        worker.stop()
    return row


EXPERIMENTS = ("sigkill", "db-drop", "sqlite-lock", "redis-down", "smtp-down", "fork-bomb")


async def main(args: argparse.Namespace) -> None:
    llm = ScriptedLLM().start()
    only = set(args.only.split(",")) if args.only else set(EXPERIMENTS)
    rows = []
    try:
        if "sigkill" in only:
            rows.append(await sigkill(args.tasks, llm))
        if "db-drop" in only:
            rows.append(await db_drop(args.tasks, llm))
        if "sqlite-lock" in only:
            rows.append(await sqlite_lock(args.tasks, llm))
        if "redis-down" in only:
            rows.append(await redis_down(args.tasks, llm, args.outage))
        if "smtp-down" in only:
            rows.append(await smtp_down(args.tasks, llm, args.outage))
        if "fork-bomb" in only:
            rows.append(await fork_bomb(args.tasks, llm))
    finally:
        llm.stop()
    print("| experiment  | submitted | completed | failed | dup effects | recovery"
          "                     | how")
    print("|---|---|---|---|---|---|---|")
    for row in rows:
        print(row.line())


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--long", action="store_true",
                        help="the long runs instead (benchmarks/chaos_long.py)")
    parser.add_argument("--tasks", type=int, default=None,
                        help="tasks per experiment (3; 200 with --long)")
    parser.add_argument("--outage", type=float, default=5.0,
                        help="seconds Redis or SMTP stays down")
    parser.add_argument("--only", default="", help=f"comma-separated of {', '.join(EXPERIMENTS)}")
    parsed = parser.parse_args()
    if parsed.long:
        from benchmarks.chaos_long import VARIANTS
        from benchmarks.chaos_long import main as long_main

        asyncio.run(long_main(parsed.tasks or 200,
                              set(parsed.only.split(",")) if parsed.only else set(VARIANTS)))
    else:
        parsed.tasks = parsed.tasks or 3
        asyncio.run(main(parsed))
