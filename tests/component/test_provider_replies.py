"""Replies as real providers shape them, over real HTTP through the openai client: the task
completes and nothing odd (null ids, reasoning) goes back to the provider."""

from __future__ import annotations

import json

from tests.factories.loop import events_of
from tests.factories.worker import submit_and_run
from tests.fakes.llm_server import finish, raw_message, text, tool_call, without_usage

_run = submit_and_run


def _call(name: str, arguments, call_id: str | None = None) -> dict:
    call = {"type": "function", "function": {"name": name, "arguments": arguments}}
    if call_id is not None:
        call["id"] = call_id
    return call


async def _written(client, task: dict, name: str) -> str:
    """A file the agent wrote under output/, downloaded through the API."""
    resp = await client.get(f"/tasks/{task['id']}/artifacts/{name}")
    assert resp.status_code == 200, resp.text
    return resp.text


def _tool_events_ok(events: list[dict]) -> list[bool]:
    return [e["data"]["ok"] for e in events]


async def test_arguments_as_an_object_without_an_id_run_and_get_an_id(
    app_client, enqueued, llm
):
    # given a call whose arguments are an object and which has no id (and one with id null)
    llm.script(raw_message(content=None, tool_calls=[
        _call("write_file", {"path": "output/a.txt", "content": "from an object"})]),
        raw_message(content=None,
                    tool_calls=[{**_call("finish", {"summary": "d"}), "id": None}]),
        finish("build"), finish("test"))
    # when the task runs
    task = await _run(app_client, enqueued)
    # then it completed, the file was written, and the conversation got a real id both ways
    assert task["status"] == "completed", task
    assert await _written(app_client, task, "a.txt") == "from an object"
    assistant = [m for m in llm.requests[1]["messages"] if m.get("tool_calls")][-1]
    call_id = assistant["tool_calls"][0]["id"]
    assert isinstance(call_id, str) and call_id.startswith("call_")
    arguments = json.loads(assistant["tool_calls"][0]["function"]["arguments"])
    assert arguments == {"path": "output/a.txt", "content": "from an object"}
    answer = next(m for m in llm.requests[1]["messages"] if m["role"] == "tool")
    assert answer["tool_call_id"] == call_id
    ids = [c["id"] for m in llm.requests[-1]["messages"] for c in m.get("tool_calls", [])]
    assert None not in ids and len(set(ids)) == len(ids)


async def test_fenced_arguments_and_trailing_text_are_recovered(app_client, enqueued, llm):
    # given arguments inside ```json fences, then arguments followed by prose
    fenced = '```json\n{"path": "output/f.txt", "content": "fenced"}\n```'
    trailing = '{"path": "output/t.txt", "content": "trailing"} I have written the file.'
    llm.script(raw_message(content=None, tool_calls=[_call("write_file", fenced, "c1")]),
               raw_message(content=None, tool_calls=[_call("write_file", trailing, "c2")]),
               finish("design"), finish("build"), finish("test"))
    # when the task runs
    task = await _run(app_client, enqueued)
    # then both calls ran as meant
    assert task["status"] == "completed", task
    assert await _written(app_client, task, "f.txt") == "fenced"
    assert await _written(app_client, task, "t.txt") == "trailing"
    calls = await events_of(app_client, task["id"], "tool_call")
    assert _tool_events_ok(calls[:2]) == [True, True]


async def test_tool_calls_written_as_text_in_content_become_calls(app_client, enqueued, llm):
    # given a model served without a tool parser: calls in <tool_call> tags, then bare JSON
    tagged = ('I will write it.\n<tool_call>\n{"name": "write_file", "arguments": '
              '{"path": "output/x.txt", "content": "tagged"}}\n</tool_call>')
    bare = '{"name": "finish", "arguments": {"summary": "designed"}}'
    llm.script(text(tagged), text(bare), finish("build"), finish("test"))
    # when the task runs
    task = await _run(app_client, enqueued)
    # then the calls ran, and the echoed reply carries them as real calls with the prose kept
    assert task["status"] == "completed", task
    assert await _written(app_client, task, "x.txt") == "tagged"
    echoed = [m for m in llm.requests[1]["messages"] if m["role"] == "assistant"][-1]
    assert echoed["content"] == "I will write it."
    assert echoed["tool_calls"][0]["function"]["name"] == "write_file"
    finished = await events_of(app_client, task["id"], "finished")
    assert finished[0]["data"]["summary"] == "designed"


async def test_json_naming_an_unknown_tool_stays_text(app_client, enqueued, llm):
    # given content that looks like a call of a tool that was not offered
    llm.script(text('{"name": "rm_rf", "arguments": {}}'), finish("design"), finish("build"),
               finish("test"))
    # when the task runs
    task = await _run(app_client, enqueued)
    # then nothing ran for it: the model was told to call a tool
    assert task["status"] == "completed", task
    assert "did not call a tool" in llm.requests[1]["messages"][-1]["content"]
    assert await events_of(app_client, task["id"], "tool_call") == []
    assert len(await events_of(app_client, task["id"], "finished")) == 3


async def test_content_parts_are_joined_and_reasoning_is_not_sent_back(
    app_client, enqueued, llm
):
    # given a reply with content as a list of parts and reasoning beside it
    llm.script(raw_message(
        content=[{"type": "text", "text": "Plan: "}, {"type": "text", "text": "one file."}],
        reasoning="private chain of thought", reasoning_content="more private thoughts",
        tool_calls=[_call("write_file", {"path": "output/p.txt", "content": "x"}, "r1")]),
        finish("design"), finish("build"), finish("test"))
    # when the task runs
    task = await _run(app_client, enqueued)
    # then the next request carries the joined text and no reasoning at all
    assert task["status"] == "completed", task
    echoed = [m for m in llm.requests[1]["messages"] if m["role"] == "assistant"][0]
    assert echoed["content"] == "Plan: one file."
    assert "private" not in json.dumps(llm.requests[1])
    llm_calls = await events_of(app_client, task["id"], "llm_call")
    assert llm_calls[0]["data"]["content"] == "Plan: one file."


async def test_missing_usage_is_estimated_marked_and_counted(app_client, enqueued, llm):
    # given a provider that reports no usage at all
    llm.responder = lambda _req: without_usage(finish("done"))
    # when a task runs
    task = await _run(app_client, enqueued)
    # then tokens were estimated (about 4 characters a token), marked, and counted
    assert task["status"] == "completed", task
    calls = await events_of(app_client, task["id"], "llm_call")
    assert calls and all(c["data"]["usage_estimated"] for c in calls)
    request_chars = len(json.dumps(llm.requests[0]))
    assert abs(calls[0]["data"]["prompt_tokens"] - request_chars // 4) < request_chars // 20
    assert task["usage"]["prompt_tokens"] == sum(c["data"]["prompt_tokens"] for c in calls)
    assert task["resources"]["estimated_llm_calls"] == len(calls)
    assert task["usage"]["cost_usd"] > 0


async def test_missing_usage_still_runs_into_the_token_budget(app_client, enqueued, llm):
    # given no usage from the provider and a model that never finishes
    llm.responder = lambda _req: without_usage(tool_call("list_files"))
    # when a task with a small token budget runs
    task = await _run(app_client, enqueued, budget={"max_tokens": 8000, "max_steps": 40})
    # then the estimate stopped it on tokens, long before the step budget
    assert task["status"] == "failed", task
    assert "token budget exhausted" in task["error"]
    assert task["usage"]["steps"] < 20
