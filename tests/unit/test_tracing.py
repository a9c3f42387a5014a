"""OpenTelemetry traces over OTLP/HTTP: one trace from the API request through the queued run to
each model and tool call, checked at a fake collector; nothing at all without an endpoint."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest

from app.core import tracing
from app.core.config import reset_settings
from tests.conftest import auth, run_enqueued
from tests.fakes.llm_server import finish, tool_call
from tests.fakes.otlp_collector import OtlpCollector


@pytest.fixture
def collector() -> Iterator[OtlpCollector]:
    server = OtlpCollector().start()
    yield server
    server.stop()


@pytest.fixture
def otel_env(env: dict[str, str], collector: OtlpCollector,
             monkeypatch: pytest.MonkeyPatch) -> Iterator[OtlpCollector]:
    """TASKBENCH_OTEL_ENDPOINT pointed at the fake collector."""
    monkeypatch.setenv("TASKBENCH_OTEL_ENDPOINT", collector.url)
    reset_settings()
    yield collector
    tracing.shutdown()


async def _client(app) -> AsyncIterator[httpx.AsyncClient]:  # type: ignore[no-untyped-def]
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test/api/v1",
                                 headers=auth(os.environ["TASKBENCH_ADMIN_API_KEY"])) as client:
        yield client


async def test_one_trace_from_request_to_llm_and_tool_calls(otel_env, db, enqueued, llm):
    from app.main import create_app

    # given the API with an OTLP endpoint configured, and a model that writes a file
    llm.script(tool_call("write_file", path="output/hello.txt", content="hi"),
               finish("planned"), finish("built"), finish("tested"))
    app = create_app(sweeper=False)
    async with app.router.lifespan_context(app):  # the lifespan turns tracing on
        async for client in _client(app):
            # when a task is submitted and run from the message the API enqueued
            resp = await client.post("/tasks", json={"title": "Say hello", "complexity": 1})
            assert resp.status_code == 201, resp.text
            assert "traceparent" in enqueued.headers[resp.json()["id"]]
            assert await run_enqueued(enqueued) == ["ran"]
            got = await client.get(f"/tasks/{resp.json()['id']}")
            assert got.json()["status"] == "completed"
        assert tracing.force_flush()
    spans = otel_env.spans
    # then the request, the run, every model call and the tool call are one trace
    [api] = otel_env.named("POST /api/v1/tasks")
    assert api.kind == "server" and api.service == "taskbench-api"
    assert api.attributes["http.request.method"] == "POST"
    assert api.attributes["http.route"] == "/api/v1/tasks"
    assert api.attributes["http.response.status_code"] == 201
    [run] = otel_env.named("run_task")
    assert run.kind == "consumer" and run.parent_id == api.span_id
    chats = otel_env.named("llm.chat")
    assert len(chats) == len(llm.requests) == 4
    [tool] = otel_env.named("tool.write_file")
    assert tool.attributes["taskbench.tool.ok"] is True
    assert tool.attributes["taskbench.tool.refused"] is False
    finishes = otel_env.named("tool.finish")  # control flow, not a failure
    assert finishes and all(s.attributes["taskbench.outcome"] == "FinishRequested"
                            and s.status != "error" for s in finishes)
    assert {s.trace_id for s in [api, run, tool, *chats]} == {api.trace_id}
    assert {s.parent_id for s in [tool, *chats]} == {run.span_id}
    first = chats[0].attributes
    assert first["gen_ai.request.model"] == first["gen_ai.response.model"]
    assert first["gen_ai.usage.input_tokens"] == 10
    assert first["gen_ai.usage.output_tokens"] == 5
    assert isinstance(first["taskbench.cost_usd"], float)
    # a route with a path parameter is named by its template, in a trace of its own
    [read] = [s for s in spans if s.name == "GET /api/v1/tasks/{task_id}"]
    assert read.trace_id != api.trace_id and read.parent_id == ""


async def test_traceparent_of_the_caller_is_continued(otel_env, app_client):
    # given tracing on and a caller that sends its own trace context
    assert tracing.setup()
    caller = "00-" + "ab" * 16 + "-" + "cd" * 8 + "-01"
    # when it calls the API
    resp = await app_client.get("/agents", headers={"traceparent": caller})
    assert resp.status_code == 200
    assert tracing.force_flush()
    # then the server span is its child
    [span] = otel_env.named("GET /api/v1/agents")
    assert (span.trace_id, span.parent_id) == ("ab" * 16, "cd" * 8)


async def test_without_an_endpoint_nothing_is_traced(env, db, enqueued, llm, monkeypatch):
    from app.main import create_app

    # given no OTLP endpoint (the default)
    monkeypatch.delenv("TASKBENCH_OTEL_ENDPOINT", raising=False)
    reset_settings()
    llm.script(finish("planned"), finish("built"), finish("tested"))
    app = create_app(sweeper=False)
    async with app.router.lifespan_context(app):
        assert not tracing.enabled()
        # then span() is a no-op that hands out a do-nothing span, and nothing is injected
        with tracing.span("anything", {"a": 1}) as span:
            span.set_attribute("b", 2)
        assert span is tracing._NO_SPAN and tracing.inject() == {}
        # and a task's message carries no trace headers
        async for client in _client(app):
            resp = await client.post("/tasks", json={"title": "quiet", "complexity": 1})
            assert resp.status_code == 201
            await run_enqueued(enqueued)
        assert enqueued.headers == {} and tracing._provider is None
