"""Live-stream benchmark: `python -m benchmarks.bench_stream [--clients 1000] [--seconds 20]
[--redis URL | --poller] [--pages-only] [--page-rounds 5]`.

N SSE clients follow T tasks on a real uvicorn while a writer process appends events at
--rate per minute; prints p50/p99 write→receipt latency, then GET /api/v1/tasks/{id} requests
per second beside a bare FastAPI endpoint measured the same way in the same run.
"""

from __future__ import annotations

import argparse
import asyncio
import gc
import json
import multiprocessing
import os
import socket
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ADMIN_KEY = "tb_admin_" + "b" * 32


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def bare_app():  # uvicorn --factory target: the baseline endpoint
    from fastapi import FastAPI

    app = FastAPI()

    @app.get("/ping/{item_id}")
    async def ping(item_id: int) -> dict:
        return {"id": item_id, "status": "ok"}

    return app


def api_app():  # uvicorn --factory target: the product's app, its collector's pauses recorded
    from app.main import create_app

    app = create_app()
    pauses: list[tuple[int, float]] = []  # (generation, seconds) of each collection
    started: list[float] = []

    def timed(phase: str, info: dict) -> None:  # type: ignore[type-arg]
        if phase == "start":
            started[:] = [time.perf_counter()]
        elif started:
            pauses.append((info["generation"], time.perf_counter() - started[0]))

    gc.callbacks.append(timed)

    @app.get("/bench/gc")
    def gc_pauses(clear: bool = False) -> dict:  # type: ignore[type-arg]
        full = [t for g, t in pauses if g == 2]
        young = [t for g, t in pauses if g < 2]
        answer = {"full": len(full), "full_ms": sum(full) * 1000,
                  "full_max_ms": max(full, default=0) * 1000,
                  "young": len(young), "young_max_ms": max(young, default=0) * 1000,
                  "old_objects": len(gc.get_objects(generation=2)),
                  "frozen": gc.get_freeze_count()}
        if clear:
            pauses.clear()
        return answer

    return app


async def prepare(tasks: int) -> list[int]:
    from app.auth.keys import ensure_admin_key, user_for_key
    from app.core.config import get_settings
    from app.core.db import dispose_engines, session_scope
    from app.models import Task
    from app.ops.migrate import upgrade

    await asyncio.to_thread(upgrade, get_settings().db_url)
    async with session_scope() as session:
        await ensure_admin_key(session, ADMIN_KEY)
    async with session_scope() as session:
        user = await user_for_key(session, ADMIN_KEY)
        rows = [Task(owner_id=user.id, title=f"bench {i}") for i in range(tasks)]
        session.add_all(rows)
        await session.flush()
        ids = [r.id for r in rows]
    await dispose_engines()
    return ids


def writer(task_ids: list[int], per_minute: int, seconds: float, written: Any = None) -> None:
    """Append events round-robin at the target rate, in small transactions every 50 ms."""
    async def run() -> None:
        from app.core.db import session_scope
        from app.tasks.events import append_event, publish

        per_tick = per_minute / 60 * 0.05
        owed, i, end = 0.0, 0, time.monotonic() + seconds
        while time.monotonic() < end:
            tick = time.monotonic()
            owed += per_tick
            async with session_scope() as session:
                events = []
                while owed >= 1:
                    tid = task_ids[i % len(task_ids)]
                    events.append(await append_event(session, tid, "bench", {"t": time.time()}))
                    owed, i = owed - 1, i + 1
            publish(events)
            if written is not None:
                written.value += len(events)
            await asyncio.sleep(max(0.0, 0.05 - (time.monotonic() - tick)))
    asyncio.run(run())


async def sse_client(port: int, task_id: int, latencies: list[float], stop: asyncio.Event,
                     ready: list[int]) -> None:
    reader, wr = await asyncio.open_connection("127.0.0.1", port)
    wr.write((f"GET /api/v1/tasks/{task_id}/events HTTP/1.1\r\nHost: x\r\n"
              f"Accept: text/event-stream\r\nAuthorization: Bearer {ADMIN_KEY}\r\n\r\n").encode())
    await wr.drain()
    # following once the stream has begun (headers and the first `retry:` line arrived), not
    # once the request was sent: connecting is measured separately
    buffer = b""
    while b"retry:" not in buffer:
        chunk = await reader.read(65536)
        if not chunk:
            return
        buffer += chunk
    buffer = buffer[buffer.index(b"retry:"):]
    ready.append(1)
    # Read whatever has arrived in one call and split it here: a timer per line (wait_for on
    # readline) made the clients, not the server, the bottleneck at a thousand followers.
    while not stop.is_set():
        try:
            chunk = await asyncio.wait_for(reader.read(65536), 1)
        except TimeoutError:
            continue
        if not chunk:
            break
        now = time.time()
        buffer += chunk
        *lines, buffer = buffer.split(b"\n")
        for line in lines:
            if line.startswith(b"data: ") and b'"t": ' in line:
                latencies.append(now - json.loads(line[6:])["data"]["t"])
    wr.close()


async def hammer(url: str, seconds: float, concurrency: int = 16) -> float:
    import httpx

    done = 0
    end = time.monotonic() + seconds
    async with httpx.AsyncClient(headers={"Authorization": f"Bearer {ADMIN_KEY}"}) as client:
        async def one() -> None:
            nonlocal done
            while time.monotonic() < end:
                resp = await client.get(url)
                assert resp.status_code == 200, resp.text
                done += 1
        await asyncio.gather(*(one() for _ in range(concurrency)))
    return done / seconds


async def fill_log(events: int) -> int:
    """A task whose log holds `events` events of a realistic size (bulk-inserted)."""
    from sqlalchemy import insert, update

    from app.auth.keys import user_for_key
    from app.core.db import dispose_engines, session_scope
    from app.models import Task, TaskEvent, table, utcnow

    async with session_scope() as session:
        user = await user_for_key(session, ADMIN_KEY)
        task = Task(owner_id=user.id, title="long log")
        session.add(task)
        await session.flush()
        task_id = int(task.id)  # type: ignore[arg-type]
        now = utcnow()
        conn = await session.connection()
        for start in range(0, events, 2000):
            await conn.execute(insert(table(TaskEvent)), [
                {"task_id": task_id, "seq": seq, "type": "tool_result", "created_at": now,
                 "data": {"tool": "run_command", "ok": True, "output": "x" * 200, "n": seq}}
                for seq in range(start + 1, min(events, start + 2000) + 1)])
        await conn.execute(update(table(Task)).where(table(Task).c.id == task_id)
                              .values(last_seq=events))
    await dispose_engines()
    return task_id


async def events_pages(port: int, events: int, rounds: int = 5) -> None:
    """GET /tasks/{id}/events page by page (500 a page, the default) over a long log, `rounds`
    times; the client's own collector is off while it times (its pauses are not the API's)."""
    import httpx

    task_id = await fill_log(events)
    times: list[float] = []
    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}",
                                 headers={"Authorization": f"Bearer {ADMIN_KEY}"}) as client:
        gc.collect()
        gc.disable()
        await api_gc(port, clear=True)
        for _ in range(rounds):
            after = 0
            while after < events:
                t0 = time.perf_counter()
                resp = await client.get(f"/api/v1/tasks/{task_id}/events",
                                        params={"after": after})
                times.append(time.perf_counter() - t0)
                assert resp.status_code == 200, resp.text
                after = resp.json()["data"][-1]["seq"]
        gc.enable()
        pauses = await api_gc(port)
    ordered = sorted(times)
    print(f"GET /tasks/{{id}}/events over {events} events, 500 a page, {len(times)} pages: "
          f"p50 {statistics.median(ordered) * 1000:.1f} ms, "
          f"p95 {ordered[int(0.95 * (len(ordered) - 1))] * 1000:.1f} ms, "
          f"p99 {ordered[int(0.99 * (len(ordered) - 1))] * 1000:.1f} ms, "
          f"max {ordered[-1] * 1000:.1f} ms (target ≤ 50 ms a page; load {os.getloadavg()[0]:.1f})")
    print(f"  over 50 ms: {sum(t > 0.05 for t in times)} pages; {collector(pauses)}")


def collector(pauses: dict) -> str:  # type: ignore[type-arg]
    """What the API's garbage collector did while the benchmark timed it (GET /bench/gc)."""
    return (f"the API's collector meanwhile: {pauses['full']} full passes, "
            f"{pauses['full_ms']:.1f} ms in all, longest {pauses['full_max_ms']:.1f} ms; "
            f"{pauses['young']} young passes, longest {pauses['young_max_ms']:.1f} ms; "
            f"{pauses['old_objects']} objects in the oldest generation, "
            f"{pauses['frozen']} frozen")


async def api_gc(port: int, clear: bool = False) -> dict:  # type: ignore[type-arg]
    import httpx

    async with httpx.AsyncClient(base_url=f"http://127.0.0.1:{port}",
                                 headers={"Authorization": f"Bearer {ADMIN_KEY}"}) as client:
        return (await client.get("/bench/gc", params={"clear": clear})).json()  # type: ignore[no-any-return]


def serve(target: list[str], port: int) -> subprocess.Popen:
    proc = subprocess.Popen([sys.executable, "-m", "uvicorn", *target, "--port", str(port),
                             "--log-level", "warning", "--no-access-log"])
    deadline = time.monotonic() + 30
    while True:
        with socket.socket() as sock:
            if sock.connect_ex(("127.0.0.1", port)) == 0:
                return proc
        if time.monotonic() > deadline:
            raise RuntimeError(f"{target} did not start")
        time.sleep(0.1)


async def main(args: argparse.Namespace) -> None:
    task_ids = await prepare(args.tasks)
    port, bare_port = free_port(), free_port()
    api = serve(["benchmarks.bench_stream:api_app", "--factory"], port)
    bare = serve(["benchmarks.bench_stream:bare_app", "--factory"], bare_port)
    try:
        if not args.pages_only:
            await follow(port, task_ids, args)
        await events_pages(port, args.events, args.page_rounds)
        task_rate = await hammer(f"http://127.0.0.1:{port}/api/v1/tasks/{task_ids[0]}", 5)
        bare_rate = await hammer(f"http://127.0.0.1:{bare_port}/ping/1", 5)
        print(f"GET /api/v1/tasks/{{id}}: {task_rate:.0f} req/s; "
              f"bare FastAPI GET /ping/{{id}}: {bare_rate:.0f} req/s (same client, same run)")
    finally:
        for server in (api, bare):
            server.terminate()
            server.wait(10)


async def follow(port: int, task_ids: list[int], args: argparse.Namespace) -> None:
    """N SSE clients follow the tasks while a writer process appends events."""
    latencies: list[float] = []
    stop, ready = asyncio.Event(), []
    clients = [asyncio.create_task(sse_client(port, task_ids[i % len(task_ids)], latencies,
                                              stop, ready)) for i in range(args.clients)]
    connecting = time.monotonic()
    while len(ready) < args.clients:
        await asyncio.sleep(0.05)
    print(f"{args.clients} streams open in {time.monotonic() - connecting:.1f} s")
    await asyncio.sleep(2)
    # the clients' own collector is off while they time, as in the pages' timing: its pauses
    # are not the API's
    gc.collect()
    gc.disable()
    await api_gc(port, clear=True)
    written = multiprocessing.Value("i", 0)
    proc = multiprocessing.Process(target=writer,
                                   args=(task_ids, args.rate, args.seconds, written))
    proc.start()
    await asyncio.to_thread(proc.join)
    await asyncio.sleep(2)
    stop.set()
    gc.enable()
    pauses = await api_gc(port)
    await asyncio.gather(*clients, return_exceptions=True)
    followers = [sum(1 for i in range(args.clients) if i % len(task_ids) == t)
                 for t in range(len(task_ids))]
    # round robin over tasks: event k went to task k % tasks, followed by followers[t]
    expected = sum(followers[k % len(task_ids)] for k in range(written.value))
    report(latencies, expected, args)
    print(f"  while following: {collector(pauses)}")


def report(latencies: list[float], expected: float, args: argparse.Namespace) -> None:
    if not latencies:
        print("no events received")
        return
    ordered = sorted(latencies)
    p = lambda q: ordered[min(len(ordered) - 1, int(q * len(ordered)))] * 1000  # noqa: E731
    print(f"{args.clients} SSE clients, {args.tasks} tasks, {args.rate} events/min, "
          f"{args.seconds:.0f} s")
    print(f"path: {'Redis pub/sub' if args.redis else 'table poller (embedded)'}")
    share = 100 * len(latencies) / max(expected, 1)
    print(f"deliveries {len(latencies)} of {expected:.0f} ({share:.1f}%); "
          f"latency p50 {p(0.5):.1f} ms, p99 {p(0.99):.1f} ms, "
          f"mean {statistics.fmean(ordered) * 1000:.1f} ms")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--clients", type=int, default=1000)
    parser.add_argument("--tasks", type=int, default=50)
    parser.add_argument("--rate", type=int, default=10_000, help="events per minute")
    parser.add_argument("--seconds", type=float, default=20)
    parser.add_argument("--events", type=int, default=10_000,
                        help="events in the log read page by page")
    parser.add_argument("--page-rounds", type=int, default=5,
                        help="times the long log is read through, page by page")
    parser.add_argument("--pages-only", action="store_true",
                        help="only the event-log pages and the GET rate (no SSE clients)")
    parser.add_argument("--redis", default=os.environ.get("TASKBENCH_BENCH_REDIS",
                                                          "redis://127.0.0.1:6379/8"),
                        help="follow over Redis pub/sub at this URL (the production path and "
                             "the target's; default the benchmarks' own Redis database, "
                             "TASKBENCH_BENCH_REDIS or db 8)")
    parser.add_argument("--poller", action="store_true",
                        help="follow through the embedded table poller instead (no Redis)")
    args = parser.parse_args()
    if args.poller:
        args.redis = ""
    tmp = Path(tempfile.mkdtemp(prefix="tb-bench-"))
    os.environ.update({"TASKBENCH_ENVIRONMENT": "test", "TASKBENCH_VAR_DIR": str(tmp),
                       "TASKBENCH_DATABASE_URL": f"sqlite+aiosqlite:///{tmp / 'tb.db'}",
                       "TASKBENCH_ADMIN_API_KEY": ADMIN_KEY,
                       "TASKBENCH_RATE_LIMIT_PER_MINUTE": "10000000",
                       "TASKBENCH_WORKSPACES_DIR": str(tmp / "ws"),
                       "TASKBENCH_REDIS_URL": args.redis})
    asyncio.run(main(args))
