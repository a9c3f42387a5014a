"""Agent-loop benchmark: what one step of the loop costs beyond the model call itself.

    python -m benchmarks.bench_loop [--tasks 15] [--db sqlite|postgres|both] [--no-peers]
                                    [--provider process|thread]

A task makes 11 model calls (8 `list_files` calls and the 3 phase-ending `finish` calls)
against the scripted OpenAI-compatible server on loopback, which answers at once. The server
runs in a process of its own (tests/fakes/llm_process.py), as a provider is elsewhere: in this
process (`--provider thread`, the old setting) its threads take the GIL from the loop while they
answer, so work the loop does meanwhile (on PostgreSQL a step's write goes out with the next
model call) counts as if done before the call. Every event,
usage row and checkpoint is persisted, to a SQLite file database in a temp dir and to a
throwaway PostgreSQL database (127.0.0.1:5432, dropped afterwards), one after the other; the
task runs in-process through app.run.runner.run_task, as a worker runs it. After each task the
requests it made are replayed as raw HTTP (the same JSON bodies posted through the same pooled
HTTP session, the reply read and parsed) against the same scripted replies, and

    overhead per step = (loop time − replay time) / 11        target: ≤ 2 ms at p50

where loop time is the agent loop (run_agent) of one task. The whole run_task time (lease, venv,
workspace, end, deliverables) and the round trip of a tiny request are printed for context.

The same job also runs through smolagents (ToolCallingAgent) and AutoGen (AssistantAgent), the
target's baseline (`--no-peers`: not), in a venv of their own made once from its lock
(benchmarks/peers, tests/locks/peers.txt), each replayed the same way through the bare openai
client in that venv, and their overhead per step is printed beside ours.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

WORK_CALLS = 8
STEPS = WORK_CALLS + 3
DATABASES = {"sqlite": "SQLite", "postgres": "PostgreSQL"}


def _configure(tmp: Path, db_url: str, llm_url: str) -> None:
    os.environ.update({
        "TASKBENCH_ENVIRONMENT": "test", "TASKBENCH_VAR_DIR": str(tmp / "var"),
        "TASKBENCH_WORKSPACES_DIR": str(tmp / "ws"), "TASKBENCH_DATABASE_URL": db_url,
        "TASKBENCH_BROKER_URL": "", "TASKBENCH_LLM_BASE_URL": llm_url,
        "TASKBENCH_LLM_API_KEY": "sk-bench-" + "b" * 24, "TASKBENCH_SANDBOX": "none",
    })
    from app.core.config import reset_settings
    from app.run.llm import reset_clients

    reset_settings()
    reset_clients()  # an HTTP session belongs to the event loop that first used it


def _script(llm: Any) -> None:
    from tests.fakes.llm_server import finish, tool_call

    work = [tool_call("list_files", path=p) for p in ("src", "output", "research", ".")] * 2
    llm.script(*work[:5], finish("planned"), *work[5:], finish("built"), finish("tested"))


async def _tiny_round_trips(n: int) -> list[float]:
    """The bare HTTP client alone posting "hi": the round trip of the smallest request."""
    from app.core.config import get_settings
    from app.run.llm_http import post_chat

    settings = get_settings()
    body = json.dumps({"model": "openai/gpt-4o-mini",
                       "messages": [{"role": "user", "content": "hi"}]}).encode()
    times = []
    for _ in range(n):
        start = time.perf_counter()
        json.loads(await post_chat(settings, body))
        times.append(time.perf_counter() - start)
    return times


async def _replay(requests: list[dict[str, Any]]) -> tuple[float, float]:
    """The loop's own request bodies posted again as raw HTTP through the same pooled client
    (serialised and posted, nothing else), each reply read and parsed: their summed time and
    CPU time."""
    from app.core.config import get_settings
    from app.run.llm_http import post_chat

    settings = get_settings()
    total = cpu = 0.0
    for body in requests:
        start, start_cpu = time.perf_counter(), time.process_time()
        json.loads(await post_chat(settings, json.dumps(body).encode()))
        total += time.perf_counter() - start
        cpu += time.process_time() - start_cpu
    return total, cpu


async def _commit_floor(url: str, n: int) -> list[float]:
    """One durable commit on the same database through the bare driver (BEGIN, a one-row
    UPDATE, COMMIT): a step writes once, so this much of its overhead is the database's."""
    times = []
    if url.startswith("postgresql"):
        import asyncpg

        conn = await asyncpg.connect(url.replace("postgresql+asyncpg://", "postgresql://"))
        try:
            await conn.execute("CREATE TABLE IF NOT EXISTS bench_probe (id int PRIMARY KEY, n int)")
            await conn.execute("INSERT INTO bench_probe VALUES (1, 0) ON CONFLICT DO NOTHING")
            for _ in range(n):
                start = time.perf_counter()
                async with conn.transaction():
                    await conn.execute("UPDATE bench_probe SET n = n + 1 WHERE id = 1")
                times.append(time.perf_counter() - start)
        finally:
            await conn.close()
        return times
    import sqlite3

    db = sqlite3.connect(url.split(":///", 1)[1], isolation_level=None)
    try:
        db.execute("PRAGMA journal_mode=WAL")
        db.execute("PRAGMA synchronous=NORMAL")
        db.execute("CREATE TABLE IF NOT EXISTS bench_probe (id int PRIMARY KEY, n int)")
        db.execute("INSERT OR IGNORE INTO bench_probe VALUES (1, 0)")
        for _ in range(n):
            start = time.perf_counter()
            db.execute("BEGIN IMMEDIATE")
            db.execute("UPDATE bench_probe SET n = n + 1 WHERE id = 1")
            db.execute("COMMIT")
            times.append(time.perf_counter() - start)
    finally:
        db.close()
    return times


async def _one_task(owner: Any) -> float:
    from app.core.db import session_factory
    from app.models import TaskCreate
    from app.run.runner import run_task
    from app.submit import submit_task

    async with session_factory()() as session:
        task = await submit_task(session=session, owner=owner, enqueue_now=False,
                                 task_in=TaskCreate(title="bench", complexity=1))
    start = time.perf_counter()
    assert task.id is not None and await run_task(task.id) == "ran"
    return time.perf_counter() - start


_loop_times: list[float] = []
_loop_cpu: list[float] = []


def _time_the_loop() -> None:
    """Wrap run_agent (the runner looks it up per task) to time the loop alone, once."""
    import app.run.agent.loop as loop

    if getattr(loop.run_agent, "bench_timed", False):
        return
    inner = loop.run_agent

    async def timed(ctx: Any) -> str:
        start, start_cpu = time.perf_counter(), time.process_time()
        try:
            return await inner(ctx)
        finally:
            _loop_times.append(time.perf_counter() - start)
            _loop_cpu.append(time.process_time() - start_cpu)

    timed.bench_timed = True  # type: ignore[attr-defined]
    loop.run_agent = timed  # type: ignore[assignment]


async def _setup() -> Any:
    from sqlalchemy import update

    from app.auth.keys import create_user
    from app.core.db import session_scope
    from app.models import Agent
    from app.ops.seed import seed_agents

    async with session_scope() as session:
        await seed_agents(session)
    async with session_scope() as session:
        await session.exec(update(Agent).values(max_concurrent=100))  # type: ignore[call-overload]
        owner, _key = await create_user(session, email="bench@example.com", is_admin=True)
    return owner


async def bench(llm: Any, n_tasks: int) -> dict[str, Any]:
    from app.core.config import get_settings
    from app.core.db import dispose_engines
    from app.core.heap import settle_heap

    owner = await _setup()
    _time_the_loop()
    _loop_times.clear()
    _loop_cpu.clear()
    tiny = await _tiny_round_trips(100)
    commits = await _commit_floor(get_settings().db_url, 100)
    task_times, replays, replay_cpu = [], [], []
    for i in range(n_tasks + 1):  # the first warms caches and is dropped
        llm.reset()
        _script(llm)
        task_times.append(await _one_task(owner))
        if i == 0:
            settle_heap()  # as a worker process does after its first task
        sent = list(llm.requests)
        assert len(sent) == STEPS, f"the loop made {len(sent)} model calls, not {STEPS}"
        llm.reset()
        _script(llm)
        wall, cpu = await _replay(sent)
        replays.append(wall)
        replay_cpu.append(cpu)
    tiny += await _tiny_round_trips(100)
    commits += await _commit_floor(get_settings().db_url, 100)
    from app.run.llm import close_clients

    await close_clients()
    await dispose_engines()
    return {"tiny": tiny, "commit": commits, "loop": _loop_times[1:], "task": task_times[1:],
            "replay": replays[1:], "loop_cpu": _loop_cpu[1:], "replay_cpu": replay_cpu[1:]}


def run_ours(llm: Any, db: str, n_tasks: int) -> dict[str, Any]:
    """Our loop on `db` ("sqlite" or "postgres"), in a fresh database."""
    from app.ops.migrate import upgrade
    from tests.factories.environment import create_pg_database, drop_pg_database

    with tempfile.TemporaryDirectory() as tmp:
        url = (create_pg_database() if db == "postgres"
               else f"sqlite+aiosqlite:///{Path(tmp) / 'bench.db'}")
        try:
            _configure(Path(tmp), url, llm.url)
            upgrade(url)
            return asyncio.run(bench(llm, n_tasks))
        finally:
            if db == "postgres":
                drop_pg_database(url)


def _ms(x: float) -> str:
    return f"{x * 1000:7.2f} ms"


def per_step(r: dict[str, Any]) -> dict[str, float]:
    """p50/p90 of (loop − replay) / steps over the tasks, and the medians it came from."""
    fair = sorted((t - rep) / STEPS for t, rep in zip(r["loop"], r["replay"], strict=True))
    cpu = [(t - rep) / STEPS for t, rep in zip(r["loop_cpu"], r["replay_cpu"], strict=True)]
    return {"p50": statistics.median(fair), "p90": fair[int(0.9 * (len(fair) - 1))],
            "loop": statistics.median(r["loop"]) / STEPS,
            "replay": statistics.median(r["replay"]) / STEPS, "cpu": statistics.median(cpu),
            "commit": statistics.median(r["commit"]) if r.get("commit") else None}


def report_ours(db: str, r: dict[str, Any], n_tasks: int) -> None:
    s = per_step(r)
    print(f"agent loop on {DATABASES[db]}, {n_tasks} tasks x {STEPS} steps ({WORK_CALLS} tool"
          " calls + 3 finish), every event persisted")
    print(f"  tiny request round trip p50   {_ms(statistics.median(r['tiny']))}")
    print(f"  one durable commit p50        {_ms(statistics.median(r['commit']))}"
          "  (the bare driver: a step's write cannot cost less)")
    print(f"  loop time per task p50        {_ms(statistics.median(r['loop']))}")
    print(f"  whole run_task p50            {_ms(statistics.median(r['task']))}"
          "  (lease, venv, workspace, end, deliverables)")
    print(f"  raw HTTP replay per step p50  {_ms(s['replay'])}  (the loop's own requests)")
    print(f"  loop overhead per step p50    {_ms(s['p50'])}   p90 {_ms(s['p90'])}"
          "   target ≤ 2 ms")
    print(f"  the same in CPU time p50      {_ms(s['cpu'])}  (this process: steadier under load,"
          " blind to the database server's own work)", flush=True)


def report_table(rows: list[tuple[str, dict[str, float]]]) -> None:
    print(f"\noverhead per step over a raw HTTP replay of the same requests ({STEPS} steps)")
    print(f"  {'':28} {'loop/step':>10} {'replay/step':>12} {'overhead p50':>13} {'p90':>9}"
          f" {'CPU p50':>10} {'1 commit':>10}")
    for name, s in rows:
        commit = f"{s['commit'] * 1000:7.2f} ms" if s["commit"] is not None else f"{'-':>10}"
        print(f"  {name:28} {s['loop'] * 1000:7.2f} ms {s['replay'] * 1000:9.2f} ms "
              f"{s['p50'] * 1000:10.2f} ms {s['p90'] * 1000:6.2f} ms {s['cpu'] * 1000:7.2f} ms "
              f"{commit}")


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--tasks", type=int, default=15)
    parser.add_argument("--db", choices=[*DATABASES, "both"], default="both")
    parser.add_argument("--peers", action=argparse.BooleanOptionalAction, default=True,
                        help="also run the job through smolagents and AutoGen, the target's "
                             "baseline (their own venv, made once from tests/locks/peers.txt); "
                             "--no-peers: ours only")
    parser.add_argument("--provider", choices=["process", "thread"], default="process",
                        help="the scripted server in a process of its own (default) or in "
                             "threads of this one")
    args = parser.parse_args()
    from benchmarks import peers
    from tests.fakes.llm_process import ScriptedLLMProcess
    from tests.fakes.llm_server import ScriptedLLM

    home = peers.venv() if args.peers else None
    rows: list[tuple[str, dict[str, float]]] = []
    with (ScriptedLLMProcess() if args.provider == "process" else ScriptedLLM()) as llm:
        for db in DATABASES if args.db == "both" else [args.db]:
            r = run_ours(llm, db, args.tasks)
            report_ours(db, r, args.tasks)
            rows.append((f"taskbench, {DATABASES[db]}", per_step(r)))
        for peer in peers.PEERS if home else []:
            assert home is not None
            r = peers.measure(home, peer, llm, args.tasks)
            package, version = next(iter(r["versions"].items()))
            rows.append((f"{package} {version}", per_step(r)))
    print(f"\nload average {' '.join(f'{x:.2f}' for x in os.getloadavg())}, python "
          f"{sys.version.split()[0]}")
    report_table(rows)


if __name__ == "__main__":
    main()
