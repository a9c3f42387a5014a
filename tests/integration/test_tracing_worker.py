"""The trace crosses the broker: a real worker process continues the API request's trace."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import redis

from app.core import tracing
from app.core.config import reset_settings
from tests.conftest import REDIS_URL, auth
from tests.fakes.llm_server import finish, tool_call
from tests.fakes.otlp_collector import OtlpCollector
from tests.integration.workers import WorkerProcess, task_row, wait_for, workers_alive

pytestmark = [pytest.mark.slow, pytest.mark.redis]


@pytest.fixture
def traced_env(env: dict[str, str], monkeypatch: pytest.MonkeyPatch
               ) -> Iterator[tuple[dict[str, str], OtlpCollector]]:
    """Redis as the broker and the fake collector as the OTLP endpoint, here and in workers."""
    collector = OtlpCollector().start()
    broker = REDIS_URL.rsplit("/", 1)[0] + "/9"
    redis.Redis.from_url(broker).flushdb()
    extra = {"TASKBENCH_BROKER_URL": broker, "TASKBENCH_OTEL_ENDPOINT": collector.url,
             "OTEL_BSP_SCHEDULE_DELAY": "100"}
    for key, value in extra.items():
        monkeypatch.setenv(key, value)
    reset_settings()
    yield {**env, **extra}, collector
    tracing.shutdown()
    collector.stop()
    redis.Redis.from_url(broker).flushdb()


async def test_worker_continues_the_request_trace(traced_env, db, llm, tmp_path: Path):
    from app.main import create_app

    worker_env, collector = traced_env
    llm.script(tool_call("write_file", path="output/a.txt", content="a"),
               finish("planned"), finish("built"), finish("tested"))
    worker = WorkerProcess(worker_env, tmp_path / "worker.log")
    app = create_app(sweeper=False)
    try:
        await wait_for(workers_alive, timeout=60)
        async with app.router.lifespan_context(app), httpx.AsyncClient(
                transport=httpx.ASGITransport(app=app), base_url="http://test/api/v1",
                headers=auth(os.environ["TASKBENCH_ADMIN_API_KEY"])) as client:
            # when a task is submitted to the API and a real worker runs it off Redis
            resp = await client.post("/tasks", json={"title": "t", "complexity": 1})
            assert resp.status_code == 201, resp.text
            task_id = resp.json()["id"]

            async def done():  # type: ignore[no-untyped-def]
                task = await task_row(task_id)
                return task if task.status in ("completed", "failed") else None

            assert (await wait_for(done, timeout=60)).status == "completed"
            tracing.force_flush()
        collector.wait_for("POST /api/v1/tasks", "run_task", "llm.chat", "tool.write_file",
                           timeout=20)
    finally:
        worker.stop()
    # then the worker's spans are in the request's trace, run_task a child of the API span
    [api] = collector.named("POST /api/v1/tasks")
    [run] = collector.named("run_task")
    assert run.service == "taskbench-worker" and api.service == "taskbench-api"
    assert (run.trace_id, run.parent_id) == (api.trace_id, api.span_id)
    assert run.attributes["taskbench.task_id"] == task_id
    worker_spans = [s for s in collector.spans if s.service == "taskbench-worker"
                    and s.name.startswith(("llm.", "tool."))]
    assert {s.trace_id for s in worker_spans} == {api.trace_id}
