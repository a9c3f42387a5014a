"""Scenario engine benchmark: overhead per actor turn and a 10-character, 20-turn run.

    python -m benchmarks.bench_scenario

A real RunContext on a temp SQLite database, the real openai client against the scripted
server on loopback answering at once. Reported:

1. engine overhead per actor turn beyond the LLM call (target ≤ 5 ms): the time of asking one
   actor and recording its move (prompt rendering, parsing, the `llm_call` usage record, the
   interaction and relationship events) minus the time spent inside the HTTP model call;
2. the whole 10 × 20 run: wall time, model calls, events and events per second.
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


def _scenario() -> dict[str, Any]:
    names = [f"Person {i:02d}" for i in range(N_CHARACTERS)]
    return {
        "name": "bench", "title": "Benchmark town", "setting": "A square.", "turns": N_TURNS,
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

    def install(self) -> None:
        from app.agent import llm
        from app.agent.scenario import turn

        real_chat, real_move, real_apply = llm.chat, turn.actor_move, turn.apply_move

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


async def _context(settings: Any) -> Any:
    from app.agent.budget import Limits
    from app.agent.context import RunContext
    from app.db import session_scope
    from app.models import Agent, Task, User
    from app.sandbox.workspace import Workspace

    async with session_scope() as session:
        user = User(email="bench@example.com")
        agent = Agent(name="bench", model="scripted/model", min_complexity=1, max_complexity=10)
        session.add_all([user, agent])
        await session.flush()
        task = Task(owner_id=user.id, agent_id=agent.id, kind="scenario", title="bench",
                    status="build", spec={"scenario": "bench", "definition": _scenario(),
                                          "seed": 1})
        session.add(task)
        await session.flush()
    ws = Workspace.for_task(settings.workspaces_dir, agent.name, task.id)
    ws.create(title="bench", description="")
    limits = Limits.resolve({"max_steps": 1000, "max_tokens": 10_000_000,
                             "max_cost_usd": 100}, settings)
    return RunContext(task=task, agent=agent, workspace=ws, settings=settings, limits=limits,
                      worker_id="bench")


async def _run(tmp: Path, url: str) -> dict[str, Any]:
    os.environ.update({
        "TASKBENCH_VAR_DIR": str(tmp / "var"), "TASKBENCH_WORKSPACES_DIR": str(tmp / "ws"),
        "TASKBENCH_DATABASE_URL": f"sqlite+aiosqlite:///{tmp / 'bench.db'}",
        "TASKBENCH_LLM_BASE_URL": url, "TASKBENCH_LLM_API_KEY": "bench-key-not-secret",
    })
    from app.agent.scenario import run_scenario
    from app.agent.scenario.replay import load_events
    from app.config import reset_settings
    from app.db import dispose_engines, session_scope
    from app.migrate import upgrade

    settings = reset_settings()
    await asyncio.to_thread(upgrade, settings.db_url)
    timers = Timers()
    timers.install()
    ctx = await _context(settings)
    started = time.perf_counter()
    await run_scenario(ctx)
    wall = time.perf_counter() - started
    async with session_scope() as session:
        events = len(await load_events(session, ctx.task_id))
    commit_ms = await _commit_ms(ctx)
    await dispose_engines()
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

    with tempfile.TemporaryDirectory() as tmp, ScriptedLLM() as llm:
        llm.responder = _responder
        r = asyncio.run(_run(Path(tmp), llm.url))
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


if __name__ == "__main__":
    main()
