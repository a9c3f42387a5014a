"""The benchmarks' no-op provider (tests/fakes/llm_finishing.py) is one the product really
completes tasks against, over its own client, with keep-alive; the scripted server in a process
of its own (tests/fakes/llm_process.py) answers and records as the in-process one does."""

from __future__ import annotations

import json
from typing import Any

import aiohttp

from tests.factories.worker import submit_and_run
from tests.fakes.llm_finishing import FinishingLLM
from tests.fakes.llm_process import ScriptedLLMProcess
from tests.fakes.llm_server import finish, tool_call


async def run_against(url: str, app_client: Any, enqueued: Any, monkeypatch: Any,
                      title: str) -> dict[str, Any]:
    """One task run with the product pointed at the provider at `url`; the task as it ended."""
    from app.core.config import reset_settings
    from app.run import llm_http

    monkeypatch.setenv("TASKBENCH_LLM_BASE_URL", url)
    reset_settings()
    await llm_http.close_clients()
    try:
        return await submit_and_run(app_client, enqueued, title=title)
    finally:
        await llm_http.close_clients()


async def test_a_task_completes_against_the_finishing_provider(
        app_client, enqueued, monkeypatch):
    with FinishingLLM() as provider:
        # given the product pointed at the benchmarks' provider, when a task runs
        task = await run_against(provider.url, app_client, enqueued, monkeypatch, "noop")
    # then every phase finished at once, on the agent's model, with usage
    assert task["status"] == "completed", task
    assert task["summary"] == "done"
    assert task["usage"]["steps"] == 3 and task["usage"]["prompt_tokens"] == 30
    events = (await app_client.get(f"/tasks/{task['id']}/events")).json()["data"]
    calls = [e["data"] for e in events if e["type"] == "llm_call"]
    assert len(calls) == 3 and {c["model"] for c in calls} == {task["model_used"]}


async def test_requests_on_one_connection_are_answered_in_turn():
    with FinishingLLM() as provider:
        connector = aiohttp.TCPConnector(limit=1)
        async with aiohttp.ClientSession(connector=connector) as session:
            replies = []
            for model in ("a/one", "b/two"):
                async with session.post(f"{provider.url}/chat/completions",
                                        json={"model": model, "messages": []}) as resp:
                    replies.append(await resp.json())
            async with session.post(f"{provider.url}/embeddings", json={}) as resp:
                assert resp.status == 404
            async with session.post(f"{provider.url}/chat/completions", data=b"{not") as resp:
                assert resp.status == 400
    assert [r["model"] for r in replies] == ["a/one", "b/two"]
    assert replies[0]["choices"][0]["message"]["tool_calls"][0]["id"] != \
        replies[1]["choices"][0]["message"]["tool_calls"][0]["id"]
    assert json.loads(replies[0]["choices"][0]["message"]["tool_calls"][0]["function"][
        "arguments"]) == {"summary": "done"}


async def test_the_scripted_server_in_its_own_process_is_driven_from_this_one(
        app_client, enqueued, monkeypatch):
    with ScriptedLLMProcess() as provider:
        # given the scripted server in a child process, with a script
        provider.script(tool_call("list_files"), finish("planned"), finish("built"),
                        finish("tested"), finish("spare"))
        # when a task runs with the product pointed at it
        task = await run_against(provider.url, app_client, enqueued, monkeypatch, "scripted")
        # then it followed the script, the requests it made are read back, what is left of
        # the script too, and a reset empties both
        sent, left = provider.requests, provider.queues
        provider.reset()
        assert provider.requests == [] and provider.queues == {}
    assert task["status"] == "completed", task
    assert task["summary"] == "tested"
    agent = [r for r in sent if r["model"] == task["model_used"]]
    assert len(agent) == 4 and "Phase: DESIGN" in str(agent[0]["messages"])
    assert left == {None: [finish("spare")]}
