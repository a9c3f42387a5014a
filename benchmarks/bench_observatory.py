"""Observatory benchmark: what one read of an ecosystem's observatory costs.

    python -m benchmarks.bench_observatory [--runs 20] [--characters 10] [--turns 20]

The dashboard's observatory re-reads GET /api/v1/ecosystems/{id}/observatory every 2 s while a
run of the ecosystem plays, and it reads the event logs of the ecosystem's latest runs (20 by
default). On a temp SQLite database, an ecosystem of N characters gets R runs of T turns whose
logs have the shape the engine writes (turn marks, narration, each character's interaction and
relationship, a graph per turn); then, through the in-process API:

1. GET /ecosystems/{id}/observatory (all R runs read), p50 / p90 of 30 reads (target ≤ 250 ms,
   an eighth of the poll interval);
2. baselines from the same run: GET /scenarios/runs/{id}/transcript of one run (one log read and
   replayed), and GET /ecosystems/{id} (the ecosystem alone).
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

ADMIN_KEY = "tb_admin_" + "b" * 32
TARGET_MS = 250.0


def run_log(names: list[str], turns: int) -> list[tuple[str, dict[str, Any]]]:
    """A played run's events as the engine writes them (each character speaks to the next)."""
    from app.kinds.scenario.graph import build_graph
    from app.kinds.scenario.relationships import Ledger, pair_key

    cast = [{"name": n, "traits": {"openness": 0.5}} for n in names]
    scenario = {"name": "bench", "title": "Benchmark town", "setting": "A square.",
                "turns": turns, "characters": cast}
    ledger = Ledger()
    events: list[tuple[str, dict[str, Any]]] = [("scenario_started", {
        "name": "bench", "title": "Benchmark town", "scenario": scenario, "relationships": [],
        "seed": 1, "turns": turns})]
    for turn in range(1, turns + 1):
        events += [("scenario_turn", {"turn": turn, "phase": "start", "of": turns}),
                   ("narration", {"turn": turn, "scene": "The square is busy.", "order": []})]
        for i, name in enumerate(names):
            other = names[(i + 1) % len(names)]
            events.append(("interaction", {"turn": turn, "actor": name, "action": "speak",
                                           "target": other, "interaction_type": "chat",
                                           "content": "Good day.", "sentiment": 0.3,
                                           "emotional_state": "fine"}))
            rel = ledger.record(actor=name, target=other, interaction_type="chat",
                                sentiment=0.3, turn=turn)
            a, b = pair_key(name, other)
            events.append(("relationship", {"turn": turn, **rel.as_dict(), "a": a, "b": b}))
        events += [("scenario_turn", {"turn": turn, "phase": "end", "of": turns}),
                   ("graph", build_graph(cast=cast, states={}, ledger=ledger, turn=turn))]
    return events


async def prepare(client: Any, args: argparse.Namespace) -> tuple[int, int, int]:
    """The ecosystem and its runs: (ecosystem id, one run's task id, events a run)."""
    from sqlmodel import select

    from app.core.db import session_scope
    from app.models import Task, User
    from app.tasks.events import append_events

    names = [f"Person {i:02d}" for i in range(args.characters)]
    ids = [(await client.post("/characters", json={"name": n})).json()["id"] for n in names]
    eco = (await client.post("/ecosystems", json={"name": "Town", "characters": ids})).json()
    log = run_log(names, args.turns)
    async with session_scope() as session:
        owner = (await session.exec(select(User))).first()
        assert owner is not None
        tasks = [Task(owner_id=owner.id, kind="scenario", title=f"run {i}", status="completed",
                      spec={"inputs": {"ecosystem": eco["id"]}}) for i in range(args.runs)]
        session.add_all(tasks)
        await session.flush()
        for task in tasks:
            assert task.id is not None
            await append_events(session, task.id, log)
    assert tasks[-1].id is not None
    return eco["id"], tasks[-1].id, len(log)


async def timed(client: Any, path: str, n: int = 30) -> list[float]:
    times = []
    for _ in range(n):
        started = time.perf_counter()
        resp = await client.get(path)
        times.append(time.perf_counter() - started)
        assert resp.status_code == 200, resp.text
    return sorted(times)


def line(label: str, times: list[float]) -> str:
    p90 = times[int(0.9 * (len(times) - 1))]
    return f"{label}: p50 {statistics.median(times) * 1000:.1f} ms, p90 {p90 * 1000:.1f} ms"


async def main(args: argparse.Namespace) -> None:
    import httpx

    from app.core.config import reset_settings
    from app.ops.migrate import upgrade

    tmp = Path(tempfile.mkdtemp(prefix="bench-observatory-"))
    os.environ.update({"TASKBENCH_DATABASE_URL": f"sqlite+aiosqlite:///{tmp / 'bench.db'}",
                       "TASKBENCH_ADMIN_API_KEY": ADMIN_KEY, "TASKBENCH_ENVIRONMENT": "test",
                       "TASKBENCH_WORKSPACES_DIR": str(tmp / "ws"),
                       "TASKBENCH_VAR_DIR": str(tmp / "var"),
                       "TASKBENCH_RATE_LIMIT_PER_MINUTE": "1000000"})
    settings = reset_settings()
    await asyncio.to_thread(upgrade, settings.db_url)
    from app.main import create_app, startup

    app = create_app(sweeper=False)
    await startup()
    async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app),
                                 base_url="http://bench/api/v1",
                                 headers={"Authorization": f"Bearer {ADMIN_KEY}"}) as client:
        eco, run, events = await prepare(client, args)
        view = (await client.get(f"/ecosystems/{eco}/observatory")).json()
        print(f"{args.runs} runs × {args.turns} turns × {args.characters} characters "
              f"({events} events a run, {events * args.runs} read per observatory); "
              f"{len(view['trust_series'])} trust points, {view['stats']['interactions']} "
              "interactions")
        observatory = await timed(client, f"/ecosystems/{eco}/observatory")
        print(line("GET /ecosystems/{id}/observatory", observatory)
              + f" (target p50 ≤ {TARGET_MS:.0f} ms)")
        one = await timed(client, f"/scenarios/runs/{run}/transcript")
        print(line("baseline GET /scenarios/runs/{id}/transcript (one run)", one)
              + f"; the observatory costs {statistics.median(observatory) / args.runs * 1000:.1f}"
              f" ms a run read, {statistics.median(observatory) / statistics.median(one):.1f}×"
              " one transcript")
        print(line("baseline GET /ecosystems/{id}", await timed(client, f"/ecosystems/{eco}")))
    from app.core.db import dispose_engines

    await dispose_engines()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--characters", type=int, default=10)
    parser.add_argument("--turns", type=int, default=20)
    asyncio.run(main(parser.parse_args()))
