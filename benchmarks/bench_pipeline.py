"""Core pipeline on Redis + PostgreSQL with real workers, each figure beside its floor.

1. Submit → completed latency of a no-op task (the fake model calls `finish` at once in every
   phase: by default tests/fakes/llm_finishing.py, in a process of its own and ~0.1 ms of CPU a
   call, as a remote provider costs this machine nothing; `--provider scripted` runs the tests'
   ScriptedLLM in this process instead, ~1 ms a call on the same two cores), a fresh workspace
   each time (no venv: the first tool that needs one makes it, and a no-op task runs none), one
   worker: p50/p95, beside the floor the issue sets, measured in the same run = a bare Celery
   no-op round trip + one `uv venv`.
2. Completed tasks per second for N no-op tasks through 2 workers (each with `--concurrency`
   pool processes, default 2 as the product runs them): N tasks queued before the workers
   start, from the first task's start to the last one's end (with the CPU a task cost the
   workers, PostgreSQL, Redis, this process and the provider meanwhile); then N more submitted
   by 8 concurrent submitters while the workers run; beside a bare Celery no-op task's
   throughput through the same 2 workers.

    python -m benchmarks.bench_pipeline [--tasks 1000] [--latency-runs 30] [--concurrency 2]
                                        [--provider finishing|scripted]
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

import redis
from sqlalchemy import update
from sqlmodel import col, func, select

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

from tests.conftest import base_env, create_pg_database, drop_pg_database  # noqa: E402
from tests.fakes.llm_finishing import FinishingLLM  # noqa: E402
from tests.fakes.llm_server import ScriptedLLM  # noqa: E402
from tests.integration.workers import WorkerProcess, wait_for, workers_alive  # noqa: E402

# a Redis database of its own (TASKBENCH_BENCH_REDIS), flushed by the benchmark
REDIS = os.environ.get("TASKBENCH_BENCH_REDIS", "redis://127.0.0.1:6379/8")
SUBMITTERS = 8  # concurrent submissions in the throughput runs
PROVIDER_PID: dict[str, int] = {}  # the fake provider's process, when it has one


def pct(values: list[float], q: float) -> float:
    values = sorted(values)
    return values[min(len(values) - 1, int(round(q * (len(values) - 1))))]


async def _setup() -> object:
    from app.core.db import session_scope
    from app.main import startup
    from app.models import Agent, User

    await startup()
    async with session_scope() as session:
        await session.exec(update(Agent).values(status="disabled"))
        session.add(Agent(name="bench", model="bench/model", min_complexity=1,
                          max_complexity=10, max_concurrent=10_000))
    async with session_scope() as session:
        return (await session.exec(select(User))).first()


async def _submit(owner: object) -> int:
    from app.core.db import session_factory
    from app.models import TaskCreate
    from app.submit import submit_task

    async with session_factory()() as session:
        task = await submit_task(session=session, owner=owner,  # type: ignore[arg-type]
                                 task_in=TaskCreate(title="noop", complexity=1))
    assert task.id is not None
    return task.id


async def _submit_many(owner: object, n: int, clients: int = SUBMITTERS) -> list[int]:
    """N submissions from `clients` concurrent submitters (as many API clients would)."""
    gate = asyncio.Semaphore(clients)

    async def one() -> int:
        async with gate:
            return await _submit(owner)

    return list(await asyncio.gather(*(one() for _ in range(n))))


def _among(ids: list[int]) -> Any:
    """`Task.id` among `ids`: as a range when they are one (they are: nothing else is submitted
    meanwhile). The benchmark polls while the workers drain; an IN list of 1,000 ids every poll
    cost this process and PostgreSQL ~1–2 ms of CPU a task, taken from the workers' two cores."""
    from app.models import Task

    if max(ids) - min(ids) + 1 == len(set(ids)):
        return col(Task.id).between(min(ids), max(ids))
    return col(Task.id).in_(ids)


async def _status(task_id: int) -> str:
    from app.core.db import session_factory
    from app.models import Task

    async with session_factory()() as session:
        task = await session.get(Task, task_id)
        return task.status if task else "?"


async def latency(owner: object, runs: int) -> list[float]:
    out = []
    for _ in range(runs):
        start = time.perf_counter()
        task_id = await _submit(owner)
        while await _status(task_id) not in ("completed", "failed"):
            await asyncio.sleep(0.002)
        out.append((time.perf_counter() - start) * 1000)
    return out


def celery_floor(runs: int) -> list[float]:
    from worker.celery_app import current_celery

    app, r, out = current_celery(), redis.Redis.from_url(REDIS), []
    for _ in range(runs):
        key = f"bench:{uuid.uuid4().hex}"
        start = time.perf_counter()
        app.send_task("noop", args=[key], queue="taskbench")
        while not r.get(key):
            time.sleep(0.0005)
        out.append((time.perf_counter() - start) * 1000)
    return out


def uv_venv_ms(runs: int) -> list[float]:
    """One fresh venv made the way the runner makes a task's (same uv, same cache)."""
    from app.core.config import get_settings
    from app.sandbox.venv import create_venv

    out, cache = [], get_settings().var_dir / "cache" / "uv"
    for _ in range(runs):
        d = Path(tempfile.mkdtemp())
        start = time.perf_counter()
        create_venv(d / "v", cache_dir=cache)
        out.append((time.perf_counter() - start) * 1000)
    return out


async def throughput(owner: object, n: int) -> tuple[float, float]:
    """(completed tasks/s, submissions/s of this process's own submit loop)."""
    from app.core.db import session_factory
    from app.models import Task

    start = time.perf_counter()
    ids = await _submit_many(owner, n)
    submitted = time.perf_counter() - start

    async def all_done() -> bool:
        async with session_factory()() as session:
            left = (await session.exec(select(func.count()).select_from(Task).where(
                _among(ids), col(Task.status).not_in(["completed", "failed"])))).one()
        return left == 0

    await wait_for(all_done, timeout=1800, interval=0.05)
    return n / (time.perf_counter() - start), n / submitted


def cpu_seconds() -> dict[str, float]:
    """CPU time used so far by the worker processes (every process of a session other than
    ours whose command is a worker), PostgreSQL's processes, Redis, this process and the fake
    provider when it runs in a process of its own."""
    totals: dict[str, float] = {"workers": 0.0, "postgres": 0.0, "redis": 0.0, "this": 0.0,
                                "provider": 0.0}
    tick = os.sysconf("SC_CLK_TCK")
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            stat = Path(f"/proc/{pid}/stat").read_text()
            cmd = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()
        except OSError:
            continue
        fields = stat[stat.rindex(")") + 2:].split()
        used = (int(fields[11]) + int(fields[12])) / tick
        if int(pid) == os.getpid():
            totals["this"] += used
        elif int(pid) == PROVIDER_PID.get("pid"):
            totals["provider"] += used
        elif ("app.ops.cli" in cmd and " worker " in cmd) or " -m worker " in cmd:
            totals["workers"] += used
        elif cmd.startswith("postgres"):
            totals["postgres"] += used
        elif cmd.startswith("redis-server"):
            totals["redis"] += used
    return totals


async def drain(owner: object, n: int, start_workers: Any) -> tuple[float, dict[str, float]]:
    """Completed tasks/s of 2 workers on N tasks queued before they start: from the first
    task's start to the last one's end, as the database recorded them (what the workers do,
    without this process's own submit loop in the way); and the CPU milliseconds a task cost
    each kind of process meanwhile (from the first task's start: the workers' start-up is
    not counted)."""
    from app.core.db import session_factory
    from app.models import Task

    ids = await _submit_many(owner, n)
    start_workers()

    async def started() -> bool:
        async with session_factory()() as session:
            return (await session.exec(select(func.count()).select_from(Task).where(
                _among(ids), col(Task.started_at).is_not(None)))).one() > 0

    await wait_for(started, timeout=120, interval=0.02)
    before = cpu_seconds()  # the workers' start-up is behind them

    async def span() -> tuple[Any, Any] | None:
        async with session_factory()() as session:
            left, first, last = (await session.exec(select(
                func.count().filter(col(Task.status).not_in(["completed", "failed"])),
                func.min(Task.started_at), func.max(Task.finished_at),
            ).where(_among(ids)))).one()
        return None if left else (first, last)

    await wait_for(lambda: _done(span), timeout=1800, interval=0.1)
    after = cpu_seconds()
    first, last = await span()  # type: ignore[misc]
    return n / (last - first).total_seconds(), {
        k: (after[k] - before[k]) * 1000 / n for k in after}


async def _done(span: Any) -> bool:
    return await span() is not None


def celery_throughput(n: int) -> float:
    from worker.celery_app import current_celery

    app, r, key = current_celery(), redis.Redis.from_url(REDIS), f"bench:{uuid.uuid4().hex}"
    start = time.perf_counter()
    for _ in range(n):
        app.send_task("noop", args=[key], queue="taskbench")
    while int(r.get(key) or 0) < n:
        time.sleep(0.002)
    return n / (time.perf_counter() - start)


async def main(args: argparse.Namespace, db_url: str, llm: FinishingLLM | ScriptedLLM) -> None:
    from app.core.config import reset_settings
    from app.ops.migrate import upgrade

    tmp = Path(tempfile.mkdtemp())
    env = {**base_env(tmp, db_url, llm.url), "TASKBENCH_BROKER_URL": REDIS,
           "TASKBENCH_REDIS_URL": REDIS}
    env.pop("TASKBENCH_SANDBOX", None)
    # product defaults: what `up` ships (the tests' shorter lease and sweep are not used here)
    for key in ("TASKBENCH_LEASE_SECONDS", "TASKBENCH_SWEEP_INTERVAL_S",
                "TASKBENCH_WORKER_HEARTBEAT_S", "TASKBENCH_VENV_DEFAULT_PACKAGES"):
        env.pop(key, None)
        os.environ.pop(key, None)
    if args.reports != "default":
        env["TASKBENCH_EAGER_REPORTS"] = "true" if args.reports == "eager" else "false"
    os.environ.update(env)
    redis.Redis.from_url(REDIS).flushdb()
    reset_settings()
    await asyncio.to_thread(upgrade, db_url)
    owner = await _setup()
    await asyncio.to_thread(_default_packages_layer)
    workers = [WorkerProcess(env, tmp / "w1.log", concurrency=args.concurrency)]
    try:
        await wait_for(workers_alive, timeout=120)
        await latency(owner, 3)  # warm-up
        lat = await latency(owner, args.latency_runs)
        floor_celery = celery_floor(args.latency_runs)
        floor_uv = uv_venv_ms(5)
        floor = statistics.median(floor_celery) + statistics.median(floor_uv)
        from app.core.config import get_settings

        print(f"reports: {args.reports} (eager: {get_settings().eager_reports}); provider: "
              f"{type(llm).__name__}")
        print(f"latency submit→completed  p50 {pct(lat, .5):7.1f} ms  p95 {pct(lat, .95):7.1f} ms"
              f"   | floor {floor:6.1f} ms (celery no-op {statistics.median(floor_celery):.1f}"
              f" + uv venv {statistics.median(floor_uv):.1f})  ratio {pct(lat, .5) / floor:.1f}x")
        workers.pop().stop()

        def start_two() -> None:
            for name in ("w2", "w3"):
                workers.append(WorkerProcess(env, tmp / f"{name}.log",
                                             concurrency=args.concurrency))

        drained, cpu = await drain(owner, args.tasks, start_two)
        tps, sps = await throughput(owner, args.tasks)
        base = celery_throughput(args.tasks)
        print(f"throughput {args.tasks} no-op tasks, 2 workers x concurrency {args.concurrency}:"
              f" queued first {drained:7.1f} tasks/s; submitted meanwhile {tps:7.1f} tasks/s"
              f" ({SUBMITTERS} submitters in this process: {sps:.1f}/s)"
              f"   | bare celery no-op: {base:7.1f} tasks/s")
        print("CPU per task while queued tasks drained: " + ", ".join(
            f"{k} {v:.1f} ms" for k, v in cpu.items()))
    finally:
        for w in workers:
            w.stop()


def _default_packages_layer() -> None:
    """The default packages' shared venv layer, built before the workers start, as a host that
    has run before has it (app.sandbox.wheels: built once a host, at its first worker's start,
    in a thread of the worker's main process). Built during the measurement, its pip download
    and install (~2 s of CPU on this machine) would run beside the first tasks."""
    from app.core.config import get_settings
    from app.sandbox.wheels import base_layer

    settings = get_settings()
    started = time.perf_counter()
    try:
        base_layer(settings, settings.venv_default_packages)
    except RuntimeError as exc:  # offline: each worker tries once at its start, as it would
        print(f"default packages' layer not built ({str(exc)[:200]})")
        return
    print(f"default packages' layer built in {time.perf_counter() - started:.1f} s "
          "before the workers start")


async def _count_workers(n: int) -> bool:
    return await workers_alive() >= n


if __name__ == "__main__":
    # a SIGTERM (from `timeout`, say) unwinds like Ctrl-C, so the workers are stopped: they run
    # in sessions of their own and, left behind, would take the next run's tasks from Redis
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    parser = argparse.ArgumentParser()
    parser.add_argument("--tasks", type=int, default=1000,
                        help="no-op tasks a throughput run drains (the issue's figure: 1,000)")
    parser.add_argument("--latency-runs", type=int, default=30)
    parser.add_argument("--concurrency", type=int, default=2,
                        help="pool processes per worker, default the product's (`taskbench "
                             "worker` and `up` run 2); the latency run uses worker 1")
    parser.add_argument("--reports", choices=("default", "eager", "lazy"), default="default",
                        help="the product's default (eager: every task's PDF at its end), or "
                             "force eager or on-demand rendering")
    parser.add_argument("--provider", choices=("finishing", "scripted"), default="finishing",
                        help="the fake model: finishing (tests/fakes/llm_finishing.py, its own "
                             "process, ~0.1 ms of CPU a call) or the tests' scripted one (a "
                             "thread per connection, ~1 ms a call, on this process's cores)")
    options = parser.parse_args()
    pg_url = create_pg_database()
    fake = FinishingLLM().start() if options.provider == "finishing" else ScriptedLLM().start()
    if isinstance(fake, FinishingLLM) and fake.pid:
        PROVIDER_PID["pid"] = fake.pid
    try:
        asyncio.run(main(options, pg_url, fake))
    finally:
        fake.stop()
        drop_pg_database(pg_url)
