"""Conversations too long for the model, answers cut at the output limit, and runs stopped
mid-step: the task goes on (or ends) with nothing it spent left unrecorded."""

from __future__ import annotations

import json

from app.run.budget import estimate_prompt_tokens
from app.run.condense import condense
from tests.factories.loop import agent_named, events_of
from tests.factories.worker import submit_and_run
from tests.fakes.llm_server import cut_off, finish, text, tool_call

BIG = "x" * 3000


_run = submit_and_run


async def _configure_junior(app_client, **changes) -> None:
    junior = await agent_named(app_client, "junior")
    config = {**junior["config"], **changes.pop("config", {})}
    resp = await app_client.patch(f"/agents/{junior['id']}", json={"config": config, **changes})
    assert resp.status_code == 200, resp.text


def _long_conversation_script(llm) -> None:
    llm.script(tool_call("write_file", path="output/big.txt", content=BIG),
               tool_call("read_file", path="output/big.txt"), tool_call("list_files"),
               finish("design"), finish("build"), finish("test"))


def _conversation(turns: int) -> list[dict]:
    messages = [{"role": "system", "content": "system prompt"},
                {"role": "user", "content": "the task"}]
    for i in range(turns):
        messages.append({"role": "assistant", "content": f"step {i}", "tool_calls": [
            {"id": f"c{i}", "type": "function",
             "function": {"name": "read_file", "arguments": json.dumps({"path": f"f{i}"})}}]})
        messages.append({"role": "tool", "tool_call_id": f"c{i}", "content": f"out{i} " + BIG})
    return messages


def test_condensing_keeps_the_head_the_last_turns_and_says_what_was_cut():
    # given a long conversation of ten read_file turns
    messages = _conversation(10)
    before = estimate_prompt_tokens(messages, None)
    # when it is condensed to about a third
    shorter = condense(messages, None, target_tokens=before // 3)
    # then the system prompt and the task are kept, the newest turn is whole, and a note
    # lists the calls that were cut
    assert shorter is not None and estimate_prompt_tokens(shorter, None) <= before // 3
    assert shorter[:2] == messages[:2]
    assert shorter[-2:] == messages[-2:]
    note = shorter[2]["content"]
    assert note.startswith("[The conversation grew too long")
    assert 'read_file({"path": "f0"}) → out0 xxx' in note
    # and no tool result is left without the call it answers
    ids = {c["id"] for m in shorter for c in m.get("tool_calls", [])}
    assert all(m["tool_call_id"] in ids for m in shorter if m["role"] == "tool")


def test_condensing_cuts_old_tool_outputs_before_whole_turns():
    # given a conversation only somewhat too long
    messages = _conversation(6)
    target = estimate_prompt_tokens(messages, None) * 3 // 4
    # when it is condensed
    shorter = condense(messages, None, target_tokens=target)
    # then every turn is still there, only older tool outputs were shortened
    assert shorter is not None and len(shorter) == len(messages)
    assert "characters cut]" in shorter[3]["content"]
    assert shorter[-1] == messages[-1]


def test_nothing_to_cut_gives_none():
    messages = [{"role": "system", "content": "s"}, {"role": "user", "content": "t"}]
    assert condense(messages, None, target_tokens=1) is None


async def test_context_length_refusal_condenses_and_retries(app_client, enqueued, llm):
    # given a provider whose window is smaller than the conversation grows
    llm.context_chars = 6000
    _long_conversation_script(llm)
    # when the task runs
    task = await _run(app_client, enqueued)
    # then the refused request was condensed and sent again, and the task completed
    assert task["status"] == "completed", task
    condensed = await events_of(app_client, task["id"], "condensed")
    assert [e["data"]["reason"] for e in condensed] == ["context_length"]
    assert condensed[0]["data"]["tokens_after"] < condensed[0]["data"]["tokens_before"]
    sizes = [len(json.dumps(r["messages"])) for r in llm.requests]
    refused = next(i for i, size in enumerate(sizes) if size > 6000)
    retried = llm.requests[refused + 1]["messages"]
    assert sizes[refused + 1] <= 6000
    assert retried[:2] == llm.requests[0]["messages"][:2]  # system prompt and task kept
    assert any("grew too long" in str(m.get("content")) for m in retried)


async def test_context_length_that_cannot_be_helped_fails_clearly(app_client, enqueued, llm):
    # given a window smaller than the system prompt and the task alone
    llm.context_chars = 200
    # when a task runs
    task = await _run(app_client, enqueued)
    # then it failed naming the provider's refusal, without walking the fallback chain
    assert task["status"] == "failed", task
    assert task["error"].startswith("ContextTooLong: 400: ")
    assert "maximum context length" in task["error"]
    assert {r["model"] for r in llm.requests} == {"openai/gpt-4o-mini"}


async def test_nearing_the_configured_window_condenses_before_sending(app_client, enqueued, llm):
    # given an agent whose model has a small window in its config, and a growing conversation
    await _configure_junior(app_client, config={"context_windows": {"openai/gpt-4o-mini": 3500}})
    _long_conversation_script(llm)
    # when the task runs
    task = await _run(app_client, enqueued)
    # then the conversation was condensed before it reached the window; no request was larger
    assert task["status"] == "completed", task
    condensed = await events_of(app_client, task["id"], "condensed")
    assert [e["data"]["reason"] for e in condensed] == ["near_window"]
    sizes = [estimate_prompt_tokens(r["messages"], r.get("tools")) for r in llm.requests]
    assert all(size <= 3500 for size in sizes), sizes  # never over the window itself


async def test_cut_output_is_named_to_the_model(app_client, enqueued, llm):
    # given a reply cut at the output limit
    llm.script(cut_off(text("Here is the long plan: step 1, step 2, st")),
               finish("design"), finish("build"), finish("test"))
    # when the task runs
    task = await _run(app_client, enqueued)
    # then the next request told the model its output was cut, and the event records why
    assert task["status"] == "completed", task
    assert "was cut off" in llm.requests[1]["messages"][-1]["content"]
    first = (await events_of(app_client, task["id"], "llm_call"))[0]
    assert first["data"]["finish_reason"] == "length"


async def test_stuck_stop_still_records_the_last_steps_usage_and_events(
    app_client, enqueued, llm
):
    # given an agent with no stronger model, stuck after two identical calls
    await _configure_junior(app_client, escalation_models=[], config={"stuck_repeat": 2})
    llm.responder = lambda _req: tool_call("list_files")
    # when the task runs (warned after step 2, stopped after step 4)
    task = await _run(app_client, enqueued)
    # then it failed as stuck, and all four calls and their tool calls were written
    assert task["status"] == "failed" and "stuck" in task["error"], task
    assert len(llm.requests) == 4
    assert task["usage"]["steps"] == 4 and task["usage"]["prompt_tokens"] == 40
    assert len(await events_of(app_client, task["id"], "llm_call")) == 4
    assert len(await events_of(app_client, task["id"], "tool_call")) == 4


async def test_time_budget_stop_mid_tool_still_records_the_step(app_client, enqueued, llm):
    # given a model whose second step runs a command outliving the task's time budget
    llm.script(tool_call("list_files"), tool_call(
        "run_command", command='python3 -c "import time; time.sleep(6)"'))
    # when a task with a 3 s budget runs
    task = await _run(app_client, enqueued, budget={"timeout_s": 3})
    # then it failed on time, and the call that started the command is recorded
    assert task["status"] == "failed" and "time budget" in task["error"], task
    assert task["usage"]["steps"] == 2
    assert len(await events_of(app_client, task["id"], "llm_call")) == 2


async def test_crash_mid_step_still_records_the_step(app_client, enqueued, llm, monkeypatch):
    # given a bug of ours that raises after a model call and its tool call
    from app.run.agent.stuck import StuckDetector

    def broken(self, calls, results):
        raise RuntimeError("a bug")

    monkeypatch.setattr(StuckDetector, "observe", broken)
    llm.script(tool_call("list_files"))
    # when a task runs
    task = await _run(app_client, enqueued)
    # then it failed as an internal error, with the call and its tool call written
    assert task["status"] == "failed" and task["error"] == "internal error: RuntimeError", task
    assert task["usage"]["steps"] == 1
    assert len(await events_of(app_client, task["id"], "llm_call")) == 1
    assert len(await events_of(app_client, task["id"], "tool_call")) == 1
