"""The long chaos runs (issue 17), `python -m benchmarks.chaos --long`:

    sigkill-pg        `--tasks` tasks through 2 workers on Redis + PostgreSQL; every 5-10 s
                      one of them is SIGKILLed (process group) and a fresh one started
    sigkill-embedded  the same on the defaults: SQLite and the embedded broker
    pg-terminate      Redis + PostgreSQL, no kills: every backend of the database is
                      terminated every 2 s for the whole run

Each task writes a log, then in one reply runs a command (it counts its runs), appends a line
and sends an email; the model answers after 0.3 s. Duplicated effects = extra lines, command
runs or outbox messages. Recovery = a killed worker's task: kill → re-queued (the sweep) →
its next `started` event. Default lease, sweep and heartbeat settings.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import random
import statistics
import tempfile
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import asyncpg
import redis

from benchmarks.chaos import REDIS, _env, _events, _owner, _submit, _task, _token
from tests.factories import create_pg_database, drop_pg_database
from tests.fakes.llm_server import ScriptedLLM, delayed, finish, tool_call, tool_calls
from tests.integration.workers import WorkerProcess, wait_for, workers_alive

OWNER = "owner@example.com"
ENDED = ("completed", "failed", "cancelled")


@dataclass
class LongRow:
    name: str
    submitted: int = 0
    completed: int = 0
    failed: int = 0
    lost: int = 0
    dups: int = 0
    kills: int = 0
    running_again: list[float] = field(default_factory=list)
    requeued: dict[tuple[float, int], float] = field(default_factory=dict)
    started: list[float] = field(default_factory=list)
    seconds: float = 0.0
    note: str = ""

    def line(self) -> str:
        def fig(values: list[float]) -> str:
            return (f"{statistics.median(values):.1f} / {max(values):.1f}" if values else "-")

        return (f"| {self.name} | {self.submitted} | {self.completed} | {self.failed} | "
                f"{self.lost} | {self.dups} | {self.kills} | {fig(self.running_again)} | "
                f"{fig(list(self.requeued.values()))} | {fig(self.started)} | "
                f"{self.seconds:.0f} s | {self.note}")


def _responder(req: dict[str, Any]) -> dict[str, Any]:
    done, token = sum(1 for m in req["messages"] if m["role"] == "tool"), _token(req)
    if done == 0:
        return delayed(0.3, tool_call("write_file", path="output/log.txt", content="start\n"))
    if done == 1:
        return delayed(0.3, tool_calls(
            ("run_python", {"code": "open('output/runs.txt', 'a').write('x')"}),
            ("insert_lines", {"path": "output/log.txt", "line": 1, "text": "entry"}),
            ("send_email", {"to": OWNER, "subject": f"progress {token}", "body": "b"})))
    return delayed(0.3, finish("done"))


class Killer:
    """Keeps 2 workers up, SIGKILLs one at random every 5-10 s and notes what it held."""

    def __init__(self, env: dict[str, str], tmp: Path, kill: bool) -> None:
        self.env, self.tmp, self.kill = env, tmp, kill
        self.workers = [self._start() for _ in range(2)]
        self.victims: list[tuple[float, int]] = []  # (monotonic kill time, task id)
        self.kills = 0

    def _start(self) -> WorkerProcess:
        return WorkerProcess(self.env, self.tmp / f"w{time.time_ns()}.log", concurrency=2)

    async def run(self, stop: asyncio.Event) -> None:
        while not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(stop.wait(), random.uniform(5, 10))
            if stop.is_set() or not self.kill:
                continue
            held = await _held()
            doomed = self.workers.pop(random.randrange(len(self.workers)))
            pids = _group(doomed.proc.pid)
            doomed.kill()
            now = time.monotonic()
            self.kills += 1
            self.victims += [(now, tid) for tid, owner in held if _pid(owner) in pids]
            self.workers.append(self._start())

    def stop(self) -> None:
        for worker in self.workers:
            worker.stop()


def _group(pgid: int) -> set[int]:
    pids = set()
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            with contextlib.suppress(OSError):
                if os.getpgid(int(entry.name)) == pgid:
                    pids.add(int(entry.name))
    return pids


def _pid(owner: str) -> int:
    parts = owner.split(":")
    return int(parts[1]) if len(parts) > 2 and parts[1].isdigit() else -1


async def _held() -> list[tuple[int, str]]:
    from sqlmodel import col, select

    from app.core.db import session_factory
    from app.models import WORKING_VALUES, Task

    with contextlib.suppress(Exception):
        async with session_factory()() as session:
            rows = (await session.exec(select(Task.id, Task.lease_owner).where(
                col(Task.status).in_(WORKING_VALUES), col(Task.lease_owner).is_not(None)))).all()
            return [(int(t or 0), str(o)) for t, o in rows]
    return []


async def _watch_requeues(killer: Killer, row: LongRow, stop: asyncio.Event) -> None:
    """kill → the victim's enqueued_at moved past the kill (the sweep re-queued it)."""
    seen: set[tuple[float, int]] = set()
    while not stop.is_set():
        await asyncio.sleep(0.2)
        for killed, tid in list(killer.victims):
            if (killed, tid) in seen:
                continue
            task = await _task(tid)
            if task is None or task.status in ENDED:
                seen.add((killed, tid))
                continue
            ago = time.monotonic() - killed
            if task.enqueued_at and (datetime.now(UTC) - task.enqueued_at.replace(
                    tzinfo=UTC)).total_seconds() < ago:
                row.requeued[(killed, tid)] = ago
                seen.add((killed, tid))


async def _measure(row: LongRow, ids: list[int], killer: Killer | None, t0: float,
                   wall0: datetime, tmp: Path) -> None:
    from sqlmodel import col, select

    from app.core.db import session_factory
    from app.models import OutboxMessage

    for tid in ids:
        task = await _task(tid)
        if task is None or task.status not in ENDED:
            row.lost += 1
            continue
        row.completed += task.status == "completed"
        row.failed += task.status != "completed"
        root = Path(task.workspace)
        lines = _read(root / "output" / "log.txt").count("entry")
        runs = len(_read(root / "output" / "runs.txt"))
        async with session_factory()() as session:
            mails = len((await session.exec(select(OutboxMessage.id).where(
                col(OutboxMessage.task_id) == tid, col(OutboxMessage.kind) == "agent"))).all())
        row.dups += max(lines - 1, 0) + max(runs - 1, 0) + max(mails - 1, 0)
    for killed, tid in killer.victims if killer else []:
        at = wall0.timestamp() + (killed - t0)
        starts = [e.created_at.replace(tzinfo=UTC).timestamp()
                  for e in await _events(tid, "started")]
        later = [t for t in starts if t > at]
        if later:
            row.running_again.append(min(later) - at)
            if (killed, tid) in row.requeued:
                row.started.append(max(min(later) - at - row.requeued[(killed, tid)], 0.0))


def _read(path: Path) -> str:
    return path.read_text() if path.is_file() else ""


async def _experiment(name: str, tasks: int, llm: ScriptedLLM, *, pg: bool, kill: bool,
                      terminate: bool) -> LongRow:
    tmp = Path(tempfile.mkdtemp())
    db_url = await asyncio.to_thread(create_pg_database) if pg else (
        f"sqlite+aiosqlite:///{tmp / 'taskbench.db'}")
    if pg:
        redis.Redis.from_url(REDIS).flushdb()
    row = LongRow(name)
    try:
        env = await _env(tmp, db_url, llm, REDIS if pg else "")
        owner = await _owner()
        llm.responder = _responder
        killer = Killer(env, tmp, kill)
        stop = asyncio.Event()
        try:
            await wait_for(lambda: _alive(2), timeout=120)
            t0, wall0 = time.monotonic(), datetime.now(UTC)
            ids = [await _submit(owner, f"chaos-{i}", notify={"email": [OWNER]})
                   for i in range(tasks)]
            row.submitted = len(ids)
            chaos = [asyncio.ensure_future(killer.run(stop)),
                     asyncio.ensure_future(_watch_requeues(killer, row, stop))]
            if terminate:
                dsn = db_url.replace("postgresql+asyncpg://", "postgresql://")
                chaos.append(asyncio.ensure_future(_terminating(dsn, stop)))
            with contextlib.suppress(AssertionError):
                await wait_for(lambda: _all_ended(ids), timeout=tasks * 6 + 300, interval=1.0)
            row.seconds = time.monotonic() - t0
            stop.set()
            results = await asyncio.gather(*chaos, return_exceptions=True)
            if terminate:
                row.note = f"{results[-1]} backends terminated"
        finally:
            stop.set()
            killer.stop()
        row.kills = killer.kills
        await _measure(row, ids, killer if kill else None, t0, wall0, tmp)
    finally:
        from app.core.db import dispose_engines

        await dispose_engines()
        if pg:
            await asyncio.to_thread(drop_pg_database, db_url)
    return row


async def _terminating(dsn: str, stop: asyncio.Event) -> int:
    """Terminate every other backend of the database every 2 s until `stop`."""
    total = 0
    while not stop.is_set():
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), 2.0)
        with contextlib.suppress(Exception):
            conn = await asyncpg.connect(dsn)
            try:
                total += len(await conn.fetch(
                    "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                    "WHERE datname = current_database() AND pid <> pg_backend_pid()"))
            finally:
                await conn.close()
    return total


async def _alive(n: int) -> bool:
    with contextlib.suppress(Exception):
        return await workers_alive() >= n
    return False


async def _all_ended(ids: list[int]) -> bool:
    from sqlmodel import col, func, select

    from app.core.db import session_factory
    from app.models import Task

    with contextlib.suppress(Exception):
        async with session_factory()() as session:
            left = (await session.exec(select(func.count()).where(
                col(Task.id).in_(ids), col(Task.status).not_in(ENDED)))).one()
            return left == 0
    return False


VARIANTS = ("sigkill-pg", "sigkill-embedded", "pg-terminate")


async def main(tasks: int, only: set[str]) -> None:
    llm = ScriptedLLM().start()
    rows = []
    try:
        if "sigkill-pg" in only:
            rows.append(await _experiment("sigkill-pg", tasks, llm, pg=True, kill=True,
                                          terminate=False))
        if "sigkill-embedded" in only:
            rows.append(await _experiment("sigkill-embedded", tasks, llm, pg=False, kill=True,
                                          terminate=False))
        if "pg-terminate" in only:
            rows.append(await _experiment("pg-terminate", tasks, llm, pg=True, kill=False,
                                          terminate=True))
    finally:
        llm.stop()
    print("| experiment | submitted | completed | failed | lost | dup effects | kills | "
          "kill → running again (median / max) | kill → re-queued | re-queued → started | "
          "wall | note |")
    print("|---|---|---|---|---|---|---|---|---|---|---|---|")
    for row in rows:
        print(row.line(), flush=True)
