"""Reading provider replies (app.run.llm_reply) without a server: the shapes one by one."""

from __future__ import annotations

import json

import pytest

from app.run.llm_reply import ProviderError, arguments_json, read_reply

WRITE = {"path": "a.txt", "content": "x"}


@pytest.mark.parametrize("raw", [
    WRITE,
    json.dumps(WRITE),
    "```json\n" + json.dumps(WRITE) + "\n```",
    "```\n" + json.dumps(WRITE) + "```",
    json.dumps(WRITE) + "\nThat writes the file.",
    json.dumps(json.dumps(WRITE)),
])
def test_arguments_are_recovered_to_one_json_object(raw):
    assert json.loads(arguments_json(raw)) == WRITE


@pytest.mark.parametrize("raw", ['{"path": "a.txt", "content": ', "[1, 2]", "write a.txt"])
def test_unrecoverable_arguments_pass_through_for_the_model_to_fix(raw):
    assert arguments_json(raw) == raw


def test_missing_arguments_are_an_empty_object():
    assert arguments_json(None) == "{}" and arguments_json("") == "{}"


def _reply(message: dict, **extra) -> bytes:
    return json.dumps({"model": "m", "choices": [{"message": message, "finish_reason": "stop"}],
                       **extra}).encode()


def test_ids_are_made_up_and_unique():
    body = _reply({"tool_calls": [
        {"function": {"name": "read_file", "arguments": "{}"}},
        {"id": None, "function": {"name": "list_files", "arguments": "{}"}},
        {"id": "0", "function": {"name": "list_files", "arguments": "{}"}},
        {"id": "0", "function": {"name": "list_files", "arguments": "{}"}}]})
    calls = read_reply(body, model="m", request_chars=40, tool_names=set()).tool_calls
    ids = [c["id"] for c in calls]
    assert all(i.startswith("call_") for i in ids[:2]) and ids[2] == "0"
    assert len(set(ids)) == 4


def test_calls_in_text_only_for_offered_tools():
    content = '<tool_call>{"name": "read_file", "arguments": {"path": "a"}}</tool_call>'
    offered = read_reply(_reply({"content": content}), model="m", request_chars=1,
                         tool_names={"read_file"})
    assert [c["function"]["name"] for c in offered.tool_calls] == ["read_file"]
    assert offered.content == ""
    not_offered = read_reply(_reply({"content": content}), model="m", request_chars=1,
                             tool_names=set())
    assert not_offered.tool_calls == [] and not_offered.content == content


def test_usage_reported_is_used_and_missing_usage_is_estimated():
    usage = {"prompt_tokens": 7, "completion_tokens": 3, "cost": 0.5}
    reported = read_reply(_reply({"content": "hi"}, usage=usage), model="m",
                          request_chars=4000, tool_names=set())
    assert (reported.prompt_tokens, reported.completion_tokens, reported.cost_usd) == (7, 3, 0.5)
    assert not reported.usage_estimated
    estimated = read_reply(_reply({"content": "x" * 400}), model="openai/gpt-4o-mini",
                           request_chars=4000, tool_names=set())
    assert estimated.usage_estimated
    assert (estimated.prompt_tokens, estimated.completion_tokens) == (1001, 101)
    assert estimated.cost_usd > 0


@pytest.mark.parametrize(("body", "retryable", "says"), [
    (b"<html><body>Bad gateway</body></html>", True, "not a JSON object: <html>"),
    (b"", True, "an empty body"),
    (b'{"choices": []}', True, "returned no choices"),
    (b'{"error": {"code": 502, "message": "upstream down"}}', True, "502: upstream down"),
    (b'{"error": {"code": 400, "message": "bad tool"}}', False, "400: bad tool"),
    (b'{"error": {"code": "server_error", "message": "oops"}}', True, "oops"),
])
def test_replies_that_are_not_answers_raise_with_the_providers_words(body, retryable, says):
    with pytest.raises(ProviderError) as caught:
        read_reply(body, model="m", request_chars=1, tool_names=set())
    assert caught.value.retryable is retryable and says in str(caught.value)
