"""The benchmarks' no-op provider (tests/fakes/llm_finishing.py) is one the product really
completes tasks against, over its own client, with keep-alive."""

from __future__ import annotations

import json

import aiohttp

from tests.factories.worker import submit_and_run
from tests.fakes.llm_finishing import FinishingLLM


async def test_a_task_completes_against_the_finishing_provider(
        app_client, enqueued, monkeypatch):
    from app.core.config import reset_settings
    from app.run import llm_http

    with FinishingLLM() as provider:
        # given the product pointed at the benchmarks' provider
        monkeypatch.setenv("TASKBENCH_LLM_BASE_URL", provider.url)
        reset_settings()
        await llm_http.close_clients()
        # when a task runs
        task = await submit_and_run(app_client, enqueued, title="noop")
        await llm_http.close_clients()
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
