"""Submission rate of one API process: `POST /api/v1/tasks` as fast as C clients can, beside a
bare FastAPI endpoint doing the floor of a submission in the same run.

    ours   `uvicorn app.main:create_app` (one process, its sweeper on: the product's shape) on
           PostgreSQL (or `--sqlite`) with a Redis broker and pub/sub; every task is stored,
           assigned to a free agent (one agent with room for all of them) and its `run_task`
           sent to Redis. No worker runs, so the rate is the API's alone.
    bare   one FastAPI endpoint under the same uvicorn: one INSERT … RETURNING through the same
           async SQLAlchemy engine, committed, then one LPUSH to the same Redis.

    python -m benchmarks.bench_submit [--seconds 10] [--clients 16] [--sqlite]
                                      [--profile api.prof]   (cProfile of the API process)
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import httpx
import redis

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from benchmarks.bench_stream import free_port  # noqa: E402
from tests.factories import create_pg_database, drop_pg_database  # noqa: E402

ADMIN_KEY = "tb_admin_" + "s" * 32
REDIS = os.environ.get("TASKBENCH_BENCH_REDIS", "redis://127.0.0.1:6379/13")


def bare_app():  # type: ignore[no-untyped-def]  # uvicorn --factory target: the floor
    import redis.asyncio as aioredis
    from fastapi import FastAPI
    from sqlalchemy import text
    from sqlalchemy.ext.asyncio import create_async_engine

    engine = create_async_engine(os.environ["TASKBENCH_DATABASE_URL"])
    queue = aioredis.Redis.from_url(REDIS)
    app = FastAPI()

    @app.post("/tasks", status_code=201)
    async def submit(body: dict) -> dict:  # type: ignore[type-arg]
        async with engine.begin() as conn:
            row = (await conn.execute(text("INSERT INTO bench_floor (title) VALUES (:t) "
                                           "RETURNING id"), {"t": body["title"]})).one()
        await queue.lpush("bench_floor", str(row.id))
        return {"id": row.id, "title": body["title"], "status": "pending"}

    return app


async def prepare(sqlite: bool) -> None:
    from sqlalchemy import text, update

    from app.auth.keys import ensure_admin_key
    from app.core.config import get_settings
    from app.core.db import dispose_engines, session_scope
    from app.main import startup
    from app.models import Agent
    from app.ops.migrate import upgrade

    await asyncio.to_thread(upgrade, get_settings().db_url)
    await startup()
    async with session_scope() as session:
        await ensure_admin_key(session, ADMIN_KEY)
        await session.exec(update(Agent).values(status="disabled"))
        session.add(Agent(name="bench", model="bench/model", min_complexity=1,
                          max_complexity=10, max_concurrent=10_000_000))
        key = "INTEGER PRIMARY KEY AUTOINCREMENT" if sqlite else "SERIAL PRIMARY KEY"
        await session.exec(text(f"CREATE TABLE bench_floor (id {key}, title TEXT)"))
    await dispose_engines()


def serve(target: str, port: int, profile: str | None) -> subprocess.Popen[bytes]:
    prefix = ["-m", "cProfile", "-o", profile] if profile else []
    proc = subprocess.Popen([sys.executable, *prefix, "-m", "uvicorn", target, "--factory",
                             "--port", str(port), "--log-level", "warning", "--no-access-log"],
                            cwd=ROOT)
    deadline = time.monotonic() + 60
    while True:
        try:
            if httpx.get(f"http://127.0.0.1:{port}/docs", timeout=2).status_code < 500:
                return proc
        except httpx.HTTPError:
            pass
        if time.monotonic() > deadline:
            raise RuntimeError(f"{target} did not start")
        time.sleep(0.2)


def stop(proc: subprocess.Popen[bytes]) -> None:
    proc.send_signal(signal.SIGINT)  # a clean exit: cProfile writes its file
    try:
        proc.wait(30)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


async def hammer(url: str, seconds: float, clients: int) -> tuple[float, list[float]]:
    """Submissions per second and each one's latency (s), `clients` at once for `seconds`."""
    times: list[float] = []
    end = time.monotonic() + seconds
    limits = httpx.Limits(max_connections=clients)
    async with httpx.AsyncClient(headers={"Authorization": f"Bearer {ADMIN_KEY}"},
                                 limits=limits, timeout=30) as client:
        async def one(n: int) -> None:
            i = 0
            while time.monotonic() < end:
                t0 = time.perf_counter()
                resp = await client.post(url, json={"title": f"noop {n}.{i}", "complexity": 1})
                times.append(time.perf_counter() - t0)
                assert resp.status_code == 201, resp.text
                i += 1
        started = time.monotonic()
        await asyncio.gather(*(one(n) for n in range(clients)))
    return len(times) / (time.monotonic() - started), times


def line(name: str, rate: float, times: list[float]) -> str:
    ordered = sorted(times)
    p = lambda q: ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000  # noqa: E731
    return (f"{name:<5} {rate:7.1f} submissions/s   latency p50 {p(0.5):6.1f} ms  "
            f"p99 {p(0.99):6.1f} ms  ({len(times)} in all)")


async def main(args: argparse.Namespace) -> None:
    await prepare(args.sqlite)
    port, bare_port = free_port(), free_port()
    api = serve("app.main:create_app", port, args.profile)
    bare = serve("benchmarks.bench_submit:bare_app", bare_port, None)
    try:
        url, bare_url = f"http://127.0.0.1:{port}/api/v1/tasks", f"http://127.0.0.1:{bare_port}/tasks"
        await hammer(url, 1, args.clients)  # warm-up: connections, caches, lazy imports
        await hammer(bare_url, 1, args.clients)
        ours, bare_rate = [], []
        for _ in range(args.rounds):  # interleaved: the machine's load moves both alike
            ours.append(await hammer(url, args.seconds, args.clients))
            bare_rate.append(await hammer(bare_url, args.seconds, args.clients))
        load = os.getloadavg()[0]
        db = "SQLite" if args.sqlite else "PostgreSQL"
        print(f"POST /api/v1/tasks, one API process, {db} + Redis broker, {args.clients} clients, "
              f"{args.rounds} × {args.seconds:.0f} s each, load {load:.1f}")
        for (rate, times), (brate, btimes) in zip(ours, bare_rate, strict=True):
            print(line("ours", rate, times) + "   | " + line("bare", brate, btimes))
        med = statistics.median(r for r, _ in ours)
        bmed = statistics.median(r for r, _ in bare_rate)
        print(f"median: ours {med:.1f}/s, bare {bmed:.1f}/s ({med / bmed:.2f} of the floor)")
    finally:
        stop(api)
        stop(bare)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seconds", type=float, default=10)
    parser.add_argument("--rounds", type=int, default=2)
    parser.add_argument("--clients", type=int, default=16)
    parser.add_argument("--sqlite", action="store_true", help="SQLite instead of PostgreSQL")
    parser.add_argument("--profile", help="write a cProfile of the API process here")
    args = parser.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="tb-submit-"))
    db_url = f"sqlite+aiosqlite:///{tmp / 'tb.db'}" if args.sqlite else create_pg_database()
    redis.Redis.from_url(REDIS).flushdb()
    os.environ.update({"TASKBENCH_ENVIRONMENT": "test", "TASKBENCH_VAR_DIR": str(tmp),
                       "TASKBENCH_DATABASE_URL": db_url, "TASKBENCH_ADMIN_API_KEY": ADMIN_KEY,
                       "TASKBENCH_RATE_LIMIT_PER_MINUTE": "10000000",
                       "TASKBENCH_WORKSPACES_DIR": str(tmp / "ws"),
                       "TASKBENCH_BROKER_URL": REDIS, "TASKBENCH_REDIS_URL": REDIS})
    try:
        asyncio.run(main(args))
    finally:
        redis.Redis.from_url(REDIS).flushdb()
        if not args.sqlite:
            drop_pg_database(db_url)
