"""Agent-loop benchmark: what one step of the loop costs beyond the model call itself.

    python -m benchmarks.bench_loop [--tasks 15]

A task makes 11 model calls (8 work tool calls and the 3 phase-ending `finish` calls) against the
scripted OpenAI-compatible server on loopback, which answers at once. Every event, usage row and
checkpoint is persisted to a SQLite file database in a temp dir; the task runs in-process through
app.run.runner.run_task, as a worker runs it. In the same run the raw round trip of the openai
client to the same server is measured, and

    overhead per step = (loop time − 11 × raw round trip) / 11        target: ≤ 2 ms at p50

where loop time is the agent loop (run_agent) of one task. The whole run_task time (lease, venv,
workspace, end, deliverables) is printed beside it for context.

The request a step sends grows with the conversation and carries the tool schemas, so a tiny
"hi" undercounts what the model call itself costs (~6 ms vs ~15 ms on loopback). The loop's own
requests are therefore also replayed through the bare client against the same scripted replies,
and the overhead is reported against both: the replay is the fair floor, the tiny request the
figure the first measurements used.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

WORK_CALLS = 8
STEPS = WORK_CALLS + 3


def _configure(tmp: Path, llm_url: str) -> str:
    url = f"sqlite+aiosqlite:///{tmp / 'bench.db'}"
    os.environ.update({
        "TASKBENCH_ENVIRONMENT": "test", "TASKBENCH_VAR_DIR": str(tmp / "var"),
        "TASKBENCH_WORKSPACES_DIR": str(tmp / "ws"), "TASKBENCH_DATABASE_URL": url,
        "TASKBENCH_BROKER_URL": "", "TASKBENCH_LLM_BASE_URL": llm_url,
        "TASKBENCH_LLM_API_KEY": "sk-bench-" + "b" * 24, "TASKBENCH_SANDBOX": "none",
    })
    return url


def _script(llm: Any) -> None:
    from tests.fakes.llm_server import finish, tool_call

    work = [tool_call("list_files", path=p) for p in ("src", "output", "research", ".")] * 2
    llm.script(*work[:5], finish("planned"), *work[5:], finish("built"), finish("tested"))


async def _raw_round_trips(n: int) -> list[float]:
    """The openai client alone against the same server: the floor a step cannot go below."""
    from app.core.config import get_settings
    from app.run.llm import client_for

    client = client_for(get_settings())
    times = []
    for _ in range(n):
        start = time.perf_counter()
        await client.chat.completions.create(
            model="openai/gpt-4o-mini", messages=[{"role": "user", "content": "hi"}])
        times.append(time.perf_counter() - start)
    return times


async def _replay(requests: list[dict[str, Any]]) -> float:
    """The bare openai client sending the loop's own requests again: their summed time."""
    from app.core.config import get_settings
    from app.run.llm import client_for

    client = client_for(get_settings())
    total = 0.0
    for body in requests:
        body = dict(body)
        known = {k: body.pop(k) for k in ("model", "messages", "tools", "max_tokens") if k in body}
        start = time.perf_counter()
        await client.chat.completions.create(**known, extra_body=body)
        total += time.perf_counter() - start
    return total


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


def _timed_loop(loop_times: list[float]) -> None:
    """Wrap run_agent (the runner looks it up per task) to time the loop alone."""
    import app.run.agent.loop as loop

    inner = loop.run_agent

    async def timed(ctx: Any) -> str:
        start = time.perf_counter()
        try:
            return await inner(ctx)
        finally:
            loop_times.append(time.perf_counter() - start)

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
        await session.execute(update(Agent).values(max_concurrent=100))
        owner, _key = await create_user(session, email="bench@example.com", is_admin=True)
    return owner


async def bench(llm: Any, n_tasks: int) -> dict[str, Any]:
    from app.core.db import dispose_engines

    owner = await _setup()
    loop_times: list[float] = []
    _timed_loop(loop_times)
    raw = await _raw_round_trips(100)
    task_times, replays = [], []
    for _ in range(n_tasks + 1):  # the first warms caches and is dropped
        llm.reset()
        _script(llm)
        task_times.append(await _one_task(owner))
        sent = list(llm.requests)
        llm.reset()
        _script(llm)
        replays.append(await _replay(sent))
    raw += await _raw_round_trips(100)
    await dispose_engines()
    return {"raw": raw, "loop": loop_times[1:], "task": task_times[1:], "replay": replays[1:]}


def _ms(x: float) -> str:
    return f"{x * 1000:7.2f} ms"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--tasks", type=int, default=15)
    args = parser.parse_args()
    from tests.fakes.llm_server import ScriptedLLM

    with tempfile.TemporaryDirectory() as tmp, ScriptedLLM() as llm:
        url = _configure(Path(tmp), llm.url)
        from app.core.config import reset_settings
        from app.ops.migrate import upgrade

        reset_settings()
        upgrade(url)
        r = asyncio.run(bench(llm, args.tasks))
    raw = statistics.median(r["raw"])
    per_step = sorted((t - STEPS * raw) / STEPS for t in r["loop"])
    p50, p90 = statistics.median(per_step), per_step[int(0.9 * (len(per_step) - 1))]
    fair = sorted((t - rep) / STEPS for t, rep in zip(r["loop"], r["replay"], strict=True))
    f50, f90 = statistics.median(fair), fair[int(0.9 * (len(fair) - 1))]
    print(f"agent loop, {args.tasks} tasks x {STEPS} steps ({WORK_CALLS} tool calls + 3 finish),"
          " every event persisted to SQLite")
    print(f"  raw openai round trip p50      {_ms(raw)}")
    print(f"  loop time per task p50         {_ms(statistics.median(r['loop']))}")
    print(f"  whole run_task p50             {_ms(statistics.median(r['task']))}"
          "  (lease, venv, workspace, end, deliverables)")
    print(f"  same requests replayed p50     {_ms(statistics.median(r['replay']) / STEPS)}"
          "  per step (bare client, the loop's own requests)")
    print(f"  loop overhead per step p50     {_ms(f50)}   p90 {_ms(f90)}   target ≤ 2 ms"
          "  (vs the replayed requests)")
    print(f"  same, vs the tiny request p50  {_ms(p50)}   p90 {_ms(p90)}")


if __name__ == "__main__":
    main()
