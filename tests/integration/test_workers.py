"""Real Celery worker processes: on the embedded broker, on Redis, and killed mid-task."""

from __future__ import annotations

import asyncio
import json
import time
from pathlib import Path

import httpx
import pytest

from tests.fakes.llm_server import ScriptedLLM, delayed, finish, tool_call
from tests.integration.workers import WorkerProcess, task_row, wait_for, workers_alive

pytestmark = pytest.mark.slow


async def _submit(client, **body) -> int:  # type: ignore[no-untyped-def]
    resp = await client.post("/tasks", json={"title": "t", "complexity": 2, **body})
    assert resp.status_code == 201, resp.text
    return int(resp.json()["id"])


async def _done(task_id: int):  # type: ignore[no-untyped-def]
    task = await task_row(task_id)
    return task if task.status in ("completed", "failed", "cancelled") else None


async def test_embedded_broker_worker_runs_tasks(api, worker_env, tmp_path: Path):
    # given one real worker on the embedded SQLite broker
    worker = WorkerProcess(worker_env, tmp_path / "worker.log")
    try:
        await wait_for(workers_alive, timeout=60)
        # when two tasks are submitted
        ids = [await _submit(api), await _submit(api)]
        # then both complete
        for task_id in ids:
            task = await wait_for(lambda t=task_id: _done(t), timeout=60)
            assert task.status == "completed", task.error
    finally:
        worker.stop()


@pytest.mark.parametrize("db_url", ["postgres"], indirect=True)
async def test_redis_and_postgres_worker_runs_tasks(redis_broker, api, worker_env, tmp_path):
    worker = WorkerProcess(worker_env, tmp_path / "worker.log")
    try:
        await wait_for(workers_alive, timeout=60)
        task_id = await _submit(api)
        task = await wait_for(lambda: _done(task_id), timeout=60)
        assert task.status == "completed", task.error
        assert task.attempts == 1
    finally:
        worker.stop()


@pytest.mark.parametrize("db_url", ["postgres"], indirect=True)
async def test_sigkilled_worker_task_completes_exactly_once(
    redis_broker, api, worker_env, llm: ScriptedLLM, tmp_path: Path
):
    # given a model that writes a file, then answers slowly while we kill the worker
    slow = {"first": True}

    def respond(req: dict) -> dict:
        tool_results = [m for m in req["messages"] if m["role"] == "tool"]
        if not tool_results:
            return tool_call("write_file", path="output/once.txt", content="side effect")
        if len(tool_results) == 1 and slow["first"]:
            slow["first"] = False
            return {**finish("design done"), "delay": 8}
        return finish("done")

    llm.responder = respond
    first = WorkerProcess(worker_env, tmp_path / "w1.log")
    try:
        await wait_for(workers_alive, timeout=60)
        task_id = await _submit(api)

        async def slow_call_started() -> bool:
            return not slow["first"]

        await wait_for(slow_call_started, timeout=60, interval=0.05)
        # when the whole worker is SIGKILLed mid-call and another worker starts
        first.kill()
        killed_at = time.monotonic()
        second = WorkerProcess(worker_env, tmp_path / "w2.log")
        try:
            task = await wait_for(lambda: _done(task_id), timeout=90)
        finally:
            second.stop()
    finally:
        first.stop() if first.proc.poll() is None else None
    # then it completed once, resumed from its checkpoint, without repeating the write
    assert task.status == "completed", task.error
    assert task.attempts == 2
    recovered_in = time.monotonic() - killed_at
    resp = await api.get(f"/tasks/{task_id}/events", params={"limit": 1000})
    events = resp.json()["data"]
    writes = [e for e in events if e["type"] == "tool_call" and e["data"]["tool"] == "write_file"]
    completions = [e for e in events if e["type"] == "status"
                   and e["data"]["status"] == "completed"]
    starts = [e for e in events if e["type"] == "started"]
    assert len(writes) == 1 and len(completions) == 1 and len(starts) == 2
    print(json.dumps({"recovered_in_s": round(recovered_in, 1)}))


async def test_dedicated_worker_serves_only_its_agents_queue(api, worker_env, tmp_path):
    # given a worker dedicated to the junior agent only
    worker = WorkerProcess(worker_env, tmp_path / "junior.log", agents="junior")
    try:
        await wait_for(workers_alive, timeout=60)
        await asyncio.sleep(1.2)  # the API's view of dedicated workers is cached for a second
        # when a junior task (complexity 1) and an engineer task (complexity 5) are submitted
        junior = await _submit(api, complexity=1)
        engineer = await _submit(api, complexity=5)
        # then the junior one runs on its dedicated queue; the other waits for a general worker
        task = await wait_for(lambda: _done(junior), timeout=60)
        assert task.status == "completed", task.error
        await asyncio.sleep(2)
        waiting = await task_row(engineer)
        assert waiting.status == "assigned" and waiting.attempts == 0
    finally:
        worker.stop()


async def test_scenario_runs_through_a_real_worker(api, worker_env, llm, tmp_path):
    from tests.factories.scenario import CastResponder, move

    # given the shipped negotiation scenario and a cast that talks
    cast = CastResponder()
    llm.responder = cast
    scenarios = (await api.get("/scenarios")).json()
    names = [s["name"] for s in (scenarios["data"] if isinstance(scenarios, dict) else scenarios)]
    assert "workplace_negotiation" in names
    worker = WorkerProcess(worker_env, tmp_path / "w.log")
    try:
        await wait_for(workers_alive, timeout=60)
        found = (await api.get("/scenarios/workplace_negotiation")).json()
        people = [c["name"] for c in found["body"]["characters"]]
        cast.plans[people[0]] = [move(people[1], "Shall we start?", "greeting", 0.6, "calm")]
        resp = await api.post("/scenarios/workplace_negotiation/runs",
                              json={"overrides": {"turns": 2}, "seed": 3})
        assert resp.status_code == 201, resp.text
        task_id = resp.json()["task_id"]
        # when the worker plays it, then it completes with interactions and a graph
        task = await wait_for(lambda: _done(task_id), timeout=120)
        assert task.status == "completed", task.error
        graph = (await api.get(f"/scenarios/runs/{task_id}/graph")).json()
        assert any({e["a"], e["b"]} == {people[0], people[1]} for e in graph["edges"])
    finally:
        worker.stop()


async def _in_flight(api_client) -> dict[str, float]:  # type: ignore[no-untyped-def]
    from prometheus_client.parser import text_string_to_metric_families

    base = str(api_client.base_url).replace("/api/v1", "")
    async with httpx.AsyncClient(transport=api_client._transport, base_url=base) as raw:
        text = (await raw.get("/metrics")).text
    return {s.labels["worker"]: s.value for f in text_string_to_metric_families(text)
            if f.name == "taskbench_worker_tasks_in_flight" for s in f.samples}


async def test_metrics_show_the_task_a_worker_is_running(api, worker_env, llm, tmp_path):
    # given a real worker and a task whose model takes a few seconds to answer
    llm.script(delayed(4, finish("plan")))
    worker = WorkerProcess(worker_env, tmp_path / "worker.log")
    try:
        await wait_for(workers_alive, timeout=60)
        assert list((await _in_flight(api)).values()) == [0]
        # when the task runs
        task_id = await _submit(api)
        # then the worker's in-flight gauge goes to 1 while it runs, and back to 0 after
        await wait_for(lambda: _equals(_in_flight(api), [1]), timeout=30)
        task = await wait_for(lambda: _done(task_id), timeout=60)
        assert task.status == "completed", task.error
        await wait_for(lambda: _equals(_in_flight(api), [0]), timeout=30)
    finally:
        worker.stop()


async def _equals(values, expected) -> bool:  # type: ignore[no-untyped-def]
    return list((await values).values()) == expected
