"""Prompt caching (issue 14): a stable prefix the provider can cache, cache breakpoints for
Anthropic models, and cached tokens counted in usage and cost — against a scripted provider
that caches a repeated prefix the way OpenAI does."""

from __future__ import annotations

import pytest

from app.core.config import reset_settings
from app.run.pricing import cost_for
from tests.factories.loop import Router, events_of, requests_about
from tests.factories.worker import submit_and_run
from tests.fakes.llm_server import tool_call


def _marks(request) -> list[int]:  # type: ignore[no-untyped-def]
    """Indexes of the messages that carry a cache breakpoint."""
    return [i for i, m in enumerate(request["messages"]) if isinstance(m.get("content"), list)
            and any("cache_control" in part for part in m["content"])]


async def test_later_steps_read_the_prefix_from_the_cache_and_cost_less(
        app_client, enqueued, llm) -> None:
    # given a provider that caches repeated prefixes (blocks of 16 tokens here)
    llm.prefix_cache, llm.cache_min_tokens, llm.cache_block = True, 16, 16
    llm.responder = Router().script(
        "cached", tool_call("write_file", path="a.txt", content="a"),
        tool_call("write_file", path="b.txt", content="b"))
    # when a task of several steps runs
    task = await submit_and_run(app_client, enqueued, title="cached", complexity=2)
    assert task["status"] == "completed", task

    # then each request starts with the previous one's whole prompt: tools, system, turns
    asked = requests_about(llm.requests, "cached")
    assert len(asked) >= 3
    for before, after in zip(asked, asked[1:], strict=False):
        if before["model"] == after["model"]:
            assert after["tools"] == before["tools"]
            assert after["messages"][:len(before["messages"])] == before["messages"]
    # and the provider's cached tokens are counted, and priced lower, from the second call on
    calls = [e["data"] for e in await events_of(app_client, task["id"], "llm_call")]
    assert calls[0]["cached_tokens"] == 0
    later = [c for c in calls[1:] if c["cached_tokens"]]
    assert later, calls
    for call in later:
        full_price = cost_for(call["model"], call["prompt_tokens"], call["completion_tokens"])
        assert call["cost_usd"] < round(full_price, 6)
    assert task["resources"]["cached_prompt_tokens"] == sum(c["cached_tokens"] for c in calls)


@pytest.mark.parametrize(("setting", "agent", "marked"), [
    ("auto", "architect", True),   # anthropic/claude-sonnet-4
    ("auto", "junior", False),     # openai/gpt-4o-mini: OpenAI caches prefixes by itself
    ("off", "architect", False),
    ("on", "junior", True),
])
async def test_cache_breakpoints_only_where_asked(app_client, enqueued, llm, monkeypatch,
                                                  setting, agent, marked) -> None:
    monkeypatch.setenv("TASKBENCH_LLM_PROMPT_CACHE", setting)
    reset_settings()
    llm.responder = Router().script("marks", tool_call("write_file", path="a.txt", content="a"))
    complexity = 7 if agent == "architect" else 2
    task = await submit_and_run(app_client, enqueued, title="marks", complexity=complexity,
                                agent=agent)
    assert task["status"] == "completed", task
    asked = requests_about(llm.requests, "marks")
    assert asked
    if marked:
        # the system prompt and the newest message are breakpoints; the text is unchanged
        assert all(_marks(r)[0] == 0 and _marks(r)[-1] == len(r["messages"]) - 1
                   for r in asked)
        system = asked[0]["messages"][0]["content"][0]
        assert system["cache_control"] == {"type": "ephemeral"} and "Title: marks" in \
            system["text"]
    else:
        assert all(_marks(r) == [] for r in asked)
