"""A distributed scenario turn on real workers: each actor's move is its own Celery task."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import httpx
import pytest

from tests.factories.scenario import THREE, CastResponder, move
from tests.fakes.llm_server import ScriptedLLM
from tests.integration.workers import WorkerProcess, task_row, wait_for, workers_alive

pytestmark = pytest.mark.slow


async def _done(task_id: int) -> Any:
    task = await task_row(task_id)
    return task if task.status in ("completed", "failed", "cancelled") else None


@pytest.mark.parametrize("db_url", ["postgres"], indirect=True)
async def test_actor_moves_are_computed_by_celery_tasks(
    redis_broker: str, api: httpx.AsyncClient, env: dict[str, str], llm: ScriptedLLM,
    tmp_path: Path,
) -> None:
    # given: two workers of one slot each (one plays the run, the other the actors' turns) and a
    # scenario that asks for distributed simultaneous turns
    cast = CastResponder()
    for name, other in (("Ann", "Bob"), ("Bob", "Ann"), ("Cy", "Ann")):
        cast.plans[name] = [move(other, f"{name} to {other}", "support", 0.4)]
    llm.responder = cast
    definition = {**THREE, "turns": 2, "turn_order": "simultaneous", "distributed": True,
                  "actor_task_timeout_s": 60, "analyst": {"enabled": False}}
    assert (await api.post("/templates/scenarios", json=definition)).status_code == 201
    worker_env = {**env, "TASKBENCH_BROKER_URL": redis_broker}
    workers = [WorkerProcess(worker_env, tmp_path / f"w{i}.log") for i in (1, 2)]
    try:
        await wait_for(lambda: _at_least(2), timeout=90)

        # when
        resp = await api.post("/scenarios/three/runs", json={"seed": 5})
        assert resp.status_code == 201, resp.text
        task_id = resp.json()["task_id"]
        task = await wait_for(lambda: _done(task_id), timeout=120)

        # then: every move came from an act_scenario_turn task, none from the run's own worker
        assert task.status == "completed", task.error
        events = (await api.get(f"/tasks/{task_id}/events", params={"limit": 1000})).json()["data"]
        interactions = [e["data"] for e in events if e["type"] == "interaction"]
        assert len(interactions) == 6
        assert {i["computed_by"] for i in interactions} == {"worker"}
        moves = [e["data"] for e in events if e["type"] == "actor_move"]
        assert sorted((m["turn"], m["actor"]) for m in moves) == [
            (t, n) for t in (1, 2) for n in ("Ann", "Bob", "Cy")]
        runner_pid = next(e["data"]["worker"] for e in events if e["type"] == "started")
        runner_pid = runner_pid.split(":")[1]
        assert all(m["worker"].split(":")[1] != runner_pid for m in moves)
        assert not [e for e in events if e["type"] == "actor_tasks_late"]
        graph = (await api.get(f"/scenarios/runs/{task_id}/graph")).json()
        assert {(e["a"], e["b"]) for e in graph["edges"]} == {("Ann", "Bob"), ("Ann", "Cy")}
    finally:
        for worker in workers:
            worker.stop()


async def _at_least(n: int) -> bool:
    return await workers_alive() >= n
