"""Scenario engine benchmark: overhead per actor turn and a 10-character, 20-turn run.

    python -m benchmarks.bench_scenario

A real RunContext on a temp SQLite database, the real openai client against the scripted
server on loopback answering at once. Reported:

1. engine overhead per actor turn beyond the LLM call (target ≤ 5 ms): the time of asking one
   actor and recording its move (prompt rendering, parsing, the `llm_call` usage record, the
   interaction and relationship events) minus the time spent inside the HTTP model call;
2. the whole 10 × 20 run: wall time, model calls, events and events per second;
3. the same run with `turn_order: simultaneous` (the actors' calls of a turn at once, their
   moves written in one transaction), with the scripted model answering at once and after
   LATENCY_S, beside the fixed order.
"""

from __future__ import annotations

import asyncio
import json
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any

N_CHARACTERS = 10
N_TURNS = 20
TARGET_MS = 5.0
LATENCY_S = 0.02


def _scenario(turn_order: str = "fixed") -> dict[str, Any]:
    names = [f"Person {i:02d}" for i in range(N_CHARACTERS)]
    return {
        "name": "bench", "title": "Benchmark town", "setting": "A square.", "turns": N_TURNS,
        "turn_order": turn_order,
        "characters": [{"name": n, "traits": {"openness": 0.5}} for n in names],
        "analyst": {"enabled": True, "every_k_turns": 5},
    }


def _responder(request: dict[str, Any]) -> dict[str, Any]:
    system = request["messages"][0]["content"]
    if system.startswith("You are the narrator"):
        return {"content": json.dumps({"scene": "The square is busy.", "changes": "none"})}
    if system.startswith("You are the analyst"):
        return {"content": json.dumps({"summary": "All calm."})}
    me = int(system.split("Person ", 1)[1][:2])
    target = f"Person {(me + 1) % N_CHARACTERS:02d}"
    return {"content": json.dumps({"action": "speak", "target": target,
                                   "interaction_type": "chat", "content": "Good day.",
                                   "sentiment": 0.3, "emotional_state": "fine"})}


class Timers:
    """Time inside the model call and inside each actor step (ask + record)."""

    def __init__(self) -> None:
        self.llm_s = 0.0
        self.actor_steps: list[float] = []

    def install(self) -> Any:
        """Patch the model call and the actor step; returns the function that undoes it."""
        from app.run import llm
        from app.run.scenario import turn

        real_chat, real_move, real_apply = llm.chat, turn.actor_move, turn.apply_move

        def restore() -> None:
            llm.chat, turn.actor_move = real_chat, real_move  # type: ignore[assignment]

        async def chat(*args: Any, **kwargs: Any) -> Any:
            started = time.perf_counter()
            try:
                return await real_chat(*args, **kwargs)
            finally:
                self.llm_s += time.perf_counter() - started

        async def actor_move(*args: Any, **kwargs: Any) -> Any:
            llm_before, started = self.llm_s, time.perf_counter()
            move = await real_move(*args, **kwargs)
            if move is not None:
                await real_apply(args[0], args[1], move, args[2])
            spent = time.perf_counter() - started - (self.llm_s - llm_before)
            self.actor_steps.append(spent)
            return None  # recorded above, so play_turn must not record it again

        llm.chat = chat  # type: ignore[assignment]
        turn.actor_move = actor_move  # type: ignore[assignment]
        return restore


async def _context(settings: Any, turn_order: str = "fixed") -> Any:
    from app.core.db import session_scope
    from app.models import Agent, Task, User
    from app.run.budget import Limits
    from app.run.context import RunContext
    from app.sandbox.workspace import Workspace

    async with session_scope() as session:
        user = User(email="bench@example.com")
        agent = Agent(name="bench", model="scripted/model", min_complexity=1, max_complexity=10)
        session.add_all([user, agent])
        await session.flush()
        task = Task(owner_id=user.id, agent_id=agent.id, kind="scenario", title="bench",
                    status="build", spec={"scenario": "bench", "definition": _scenario(turn_order),
                                          "seed": 1})
        session.add(task)
        await session.flush()
    ws = Workspace.for_task(settings.workspaces_dir, agent.name, task.id)
    ws.create(title="bench", description="")
    limits = Limits.resolve({"max_steps": 1000, "max_tokens": 10_000_000,
                             "max_cost_usd": 100}, settings)
    return RunContext(task=task, agent=agent, workspace=ws, settings=settings, limits=limits,
                      worker_id="bench")


async def _wall(tmp: Path, url: str, turn_order: str) -> float:
    """The whole run's wall time in seconds (nothing patched)."""
    from app.run.scenario.engine import run_scenario

    settings = await _settings(tmp, url)
    ctx = await _context(settings, turn_order)
    started = time.perf_counter()
    await run_scenario(ctx)
    wall = time.perf_counter() - started
    await _close(settings)
    return wall


async def _close(settings: Any) -> None:
    """Close this run's HTTP client and engines inside its own event loop."""
    from app.core.db import dispose_engines
    from app.run import llm

    await llm.close_clients()
    llm.reset_clients()
    await dispose_engines()


async def _settings(tmp: Path, url: str) -> Any:
    """Point the process at a fresh SQLite database under `tmp` and migrate it."""
    from app.core.config import reset_settings
    from app.ops.migrate import upgrade
    from app.run import llm

    llm.reset_clients()  # a cached client belongs to the previous run's event loop
    tmp.mkdir(parents=True, exist_ok=True)
    os.environ.update({
        "TASKBENCH_VAR_DIR": str(tmp / "var"), "TASKBENCH_WORKSPACES_DIR": str(tmp / "ws"),
        "TASKBENCH_DATABASE_URL": f"sqlite+aiosqlite:///{tmp / 'bench.db'}",
        "TASKBENCH_LLM_BASE_URL": url, "TASKBENCH_LLM_API_KEY": "bench-key-not-secret",
    })
    settings = reset_settings()
    await asyncio.to_thread(upgrade, settings.db_url)
    return settings


async def _run(tmp: Path, url: str) -> dict[str, Any]:
    from app.core.db import session_scope
    from app.kinds.scenario.replay import load_events
    from app.run.scenario.engine import run_scenario

    settings = await _settings(tmp, url)
    timers = Timers()
    restore = timers.install()
    ctx = await _context(settings)
    started = time.perf_counter()
    try:
        await run_scenario(ctx)
    finally:
        restore()
    wall = time.perf_counter() - started
    async with session_scope() as session:
        events = len(await load_events(session, ctx.task_id))
    commit_ms = await _commit_ms(ctx)
    await _close(settings)
    steps_ms = [s * 1000 for s in timers.actor_steps]
    return {"wall_s": wall, "events": events, "llm_s": timers.llm_s, "calls": ctx.spent.steps,
            "actor_turns": len(steps_ms), "overhead_ms_mean": statistics.mean(steps_ms),
            "overhead_ms_p95": statistics.quantiles(steps_ms, n=20)[-1], "commit_ms": commit_ms}


async def _commit_ms(ctx: Any, n: int = 50) -> float:
    """The cost of one durable event (one transaction) here: the floor under the overhead."""
    started = time.perf_counter()
    for _ in range(n):
        await ctx.emit("bench_probe", {})
    return (time.perf_counter() - started) / n * 1000


def main() -> None:
    from tests.fakes.llm_server import ScriptedLLM

    latency = {"s": 0.0}

    def respond(request: dict[str, Any]) -> dict[str, Any]:
        return {**_responder(request), "delay": latency["s"]}

    walls: dict[tuple[str, float], float] = {}
    with tempfile.TemporaryDirectory() as tmp, ScriptedLLM() as llm:
        llm.responder = respond
        r = asyncio.run(_run(Path(tmp) / "timed", llm.url))
        for latency["s"] in (0.0, LATENCY_S):
            for order in ("fixed", "simultaneous"):
                where = Path(tmp) / f"{order}-{latency['s']}"
                walls[order, latency["s"]] = asyncio.run(_wall(where, llm.url, order))
    verdict = "ok" if r["overhead_ms_mean"] <= TARGET_MS else "over target"
    print(f"scenario {N_CHARACTERS} characters × {N_TURNS} turns (scripted LLM, SQLite)")
    print(f"  engine overhead per actor turn   mean {r['overhead_ms_mean']:.2f} ms, "
          f"p95 {r['overhead_ms_p95']:.2f} ms  (target ≤ {TARGET_MS} ms: {verdict})")
    print(f"  of which database transactions   2 per actor turn (usage record, move + ties), "
          f"{r['commit_ms']:.2f} ms each here")
    print(f"  whole run                        {r['wall_s']:.2f} s, {r['calls']} model calls, "
          f"{r['actor_turns']} actor turns")
    print(f"  time inside model calls          {r['llm_s']:.2f} s "
          f"({r['llm_s'] / r['calls'] * 1000:.2f} ms per call on loopback)")
    print(f"  events                           {r['events']} "
          f"({r['events'] / r['wall_s']:.0f} events/s)")
    for lat in (0.0, LATENCY_S):
        fixed, simultaneous = walls["fixed", lat], walls["simultaneous", lat]
        print(f"  whole run, model answers in {lat * 1000:2.0f} ms  fixed order {fixed:.2f} s, "
              f"simultaneous {simultaneous:.2f} s ({fixed / simultaneous:.1f}×)")


if __name__ == "__main__":
    main()
