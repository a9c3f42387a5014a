"""With default settings a task whose worker was SIGKILLed is running again on another worker
within 10 s: its lease (6 s, renewed every 0.5 s) runs out and the sweep (every 1 s) re-queues
it. The deadline is checked on the dead worker's lease as stored, not on a stopwatch; the
measured figure is printed (and is what `python -m benchmarks.chaos` reports)."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from app.core.config import Settings
from tests.chaos.support import ended, events
from tests.fakes.llm_server import ScriptedLLM, delayed, finish
from tests.integration.workers import WorkerProcess, task_row, wait_for, workers_alive

pytestmark = pytest.mark.slow
TUNED = ("TASKBENCH_LEASE_SECONDS", "TASKBENCH_SWEEP_INTERVAL_S", "TASKBENCH_WORKER_HEARTBEAT_S")


async def _started_twice(api, task_id: int):  # type: ignore[no-untyped-def]
    starts = [e for e in await events(api, task_id) if e["type"] == "started"]
    return starts if len(starts) >= 2 else None


async def test_a_killed_workers_task_runs_again_within_ten_seconds_by_default(
    redis_broker, api, worker_env, llm: ScriptedLLM, tmp_path: Path,
    monkeypatch: pytest.MonkeyPatch,
):
    # given two workers on the default lease, sweep and heartbeat settings
    for key in TUNED:
        monkeypatch.delenv(key, raising=False)
    defaults = Settings()
    env = {k: v for k, v in worker_env.items() if k not in TUNED}
    first_call = {"slow": True}

    def respond(_req: dict) -> dict:  # type: ignore[type-arg]
        slow, first_call["slow"] = first_call["slow"], False
        return delayed(30, finish("plan")) if slow else finish("done")

    llm.responder = respond
    doomed = WorkerProcess(env, tmp_path / "doomed.log")
    survivor = None
    try:
        await wait_for(workers_alive, timeout=60)
        resp = await api.post("/tasks", json={"title": "t", "complexity": 2})
        task_id = int(resp.json()["id"])

        async def in_model_call() -> bool:
            return not first_call["slow"]

        await wait_for(in_model_call, timeout=60, interval=0.05)
        survivor = WorkerProcess(env, tmp_path / "survivor.log")
        await wait_for(lambda: _count(2), timeout=60)
        # when the worker running it is SIGKILLed
        doomed.kill()
        killed_at = datetime.now(UTC)
        held = await task_row(task_id)
        starts = await wait_for(lambda: _started_twice(api, task_id), timeout=60)
        task = await wait_for(lambda: ended(task_id), timeout=60)
    finally:
        doomed.stop() if doomed.proc.poll() is None else None
        if survivor is not None:
            survivor.stop()
    # then the dead worker's lease ran out in time for the sweep to re-queue it within 10 s
    assert defaults.lease_seconds + 2 * defaults.sweep_interval_s < 10
    assert held.lease_expires_at is not None
    expires = held.lease_expires_at.replace(tzinfo=UTC)
    assert expires - killed_at <= timedelta(seconds=defaults.lease_seconds)
    # and it ran again on the other worker and completed once
    assert task.status == "completed", task.error
    assert task.attempts == 2 and starts[1]["data"]["worker"] != starts[0]["data"]["worker"]
    again = datetime.fromisoformat(starts[1]["created_at"].replace("Z", "+00:00"))
    print(json.dumps({"kill_to_running_again_s": round((again - killed_at).total_seconds(), 2)}))


async def _count(n: int) -> bool:
    return await workers_alive() >= n
