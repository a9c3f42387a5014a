"""The tool schemas a model request carries (~9 KB for all tools) are built and serialised once
per list, not at every call (issue 15: they were serialised twice a call), and what is sent is
the same JSON."""

from __future__ import annotations

import json

from app.run.budget import estimate_prompt_tokens
from app.run.llm import body_json
from app.tools import registry
from app.tools.registry import REGISTRY, schemas, schemas_json, tool


def test_the_same_tools_are_the_same_list_and_serialised_once(monkeypatch):
    # given the tools an agent may use, asked for twice (two phases, two runs)
    first, again = schemas(["read_file", "finish"]), schemas(["read_file", "finish"])
    # then they are one list, whose JSON is worked out once
    assert first is again
    text, real, calls = schemas_json(first), json.dumps, []
    monkeypatch.setattr(json, "dumps", lambda *a, **k: calls.append(a) or real(*a, **k))
    assert schemas_json(again) is text and calls == []
    # and a list of other tools is not that one
    assert schemas(None) is not first and len(schemas(None)) > len(first)


def test_a_request_body_is_the_json_of_the_body():
    tools = schemas(None)
    body = {"model": "m", "messages": [{"role": "user", "content": "hi \u00e9"}],
            "tools": tools, "max_tokens": 64}
    # the request's text parses to the body itself, tools included
    assert json.loads(body_json(body)) == body
    assert json.loads(body_json({"model": "m", "messages": []})) == {"model": "m",
                                                                      "messages": []}
    # and a prompt's size estimate counts the tools as sent
    assert estimate_prompt_tokens(body["messages"], tools) > len(schemas_json(tools)) // 4


def test_messages_serialised_for_the_estimate_are_the_requests_own(monkeypatch):
    # given a conversation serialised once, to size the prompt
    messages = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "hi"}]
    text = json.dumps(messages, default=str)
    estimate = estimate_prompt_tokens(messages, None, text)
    assert estimate == estimate_prompt_tokens(messages, None)
    # when the request body is made with it, the messages are not serialised again
    real, calls = json.dumps, []
    monkeypatch.setattr(json, "dumps", lambda *a, **k: calls.append(a[0]) or real(*a, **k))
    for body in ({"model": "m", "messages": messages, "tools": schemas(["finish"])},
                 {"model": "m", "messages": messages, "max_tokens": 9}, {"messages": messages}):
        assert json.loads(body_json(body, text)) == body
    assert messages not in calls


def test_a_tool_registered_later_is_offered():
    before = schemas(None)
    try:
        @tool("zz_probe", "a probe", {"properties": {}})
        async def zz_probe(ctx) -> str:  # noqa: ANN001
            return "ok"

        after = schemas(None)
        assert "zz_probe" in [t["function"]["name"] for t in after]
        assert "zz_probe" not in [t["function"]["name"] for t in before]
    finally:
        REGISTRY.pop("zz_probe", None)
        registry._offered.clear()
