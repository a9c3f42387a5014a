"""The agent loop: routing by complexity, a person in the loop, and escalation when stuck."""

from __future__ import annotations

import asyncio
import threading

import pytest

from app.run.agent.stuck import StuckDetector
from app.sandbox.workspace import Workspace
from app.tools.registry import Dispatched
from tests.factories import run_enqueued
from tests.factories.loop import Router, agent_named, events_of, requests_about
from tests.fakes.llm_server import finish, last_user_text, tool_call

ENGINEER_MODEL = "openai/gpt-4.1-mini"


async def test_routing_sends_each_complexity_to_its_agents_model(app_client, enqueued, llm):
    # given the seeded junior (1-3), engineer (3-7) and architect (6-10)
    llm.responder = Router()
    expected = {2: "openai/gpt-4o-mini", 5: "openai/gpt-4.1-mini", 9: "anthropic/claude-sonnet-4"}
    # when tasks of complexity 2, 5 and 9 run
    for complexity in expected:
        resp = await app_client.post("/tasks", json={"title": f"c{complexity}",
                                                     "complexity": complexity})
        assert resp.status_code == 201, resp.text
    await run_enqueued(enqueued)
    # then every agent request of each task went to the model of the agent covering it
    for complexity, model in expected.items():
        sent = requests_about(llm.requests, f"c{complexity}")
        assert sent and {r["model"] for r in sent} == {model}, complexity
    tasks = (await app_client.get("/tasks")).json()["data"]
    assert {t["complexity"]: t["agent"] for t in tasks} == {2: "junior", 5: "engineer",
                                                            9: "architect"}
    assert {t["complexity"]: t["model_used"] for t in tasks} == expected


async def test_message_posted_mid_run_is_in_the_next_request(app_client, enqueued, llm):
    # given a model whose first answer is held until the test has posted a message
    release = threading.Event()

    def held(_request):
        release.wait(10)
        return tool_call("list_files")

    router = Router().script("chat", held)
    llm.responder = router
    resp = await app_client.post("/tasks", json={"title": "chat", "complexity": 1})
    task_id = resp.json()["id"]
    run = asyncio.ensure_future(run_enqueued(enqueued))
    while not llm.requests:
        await asyncio.sleep(0.02)
    # when a person posts a message while the model is thinking
    posted = await app_client.post(f"/tasks/{task_id}/messages",
                                   json={"content": "Use British spelling, please."})
    assert posted.status_code == 201
    release.set()
    await run
    # then the very next request carries it, and its delivery is an event
    assert "Use British spelling, please." not in str(llm.requests[0]["messages"])
    assert "Use British spelling, please." in last_user_text(llm.requests[1])
    assert await events_of(app_client, task_id, "message_delivered")


async def test_ask_user_waits_without_a_slot_and_resumes_on_the_answer(
    app_client, enqueued, llm
):
    # given a model that asks a question first
    llm.responder = Router().script("paint", tool_call("ask_user", question="Which colour?"))
    resp = await app_client.post("/tasks", json={"title": "paint", "complexity": 1})
    task_id = resp.json()["id"]
    # when it runs
    await run_enqueued(enqueued)
    # then it waits for input with the question as an event, holding no agent slot
    task = (await app_client.get(f"/tasks/{task_id}")).json()
    assert task["status"] == "waiting_input"
    assert [e["data"]["question"] for e in await events_of(app_client, task_id, "question")] \
        == ["Which colour?"]
    assert (await agent_named(app_client, "junior"))["active_tasks"] == 0
    # when the user answers
    await app_client.post(f"/tasks/{task_id}/messages", json={"content": "Blue."})
    assert (await app_client.get(f"/tasks/{task_id}")).json()["status"] == "assigned"
    await run_enqueued(enqueued)
    # then the task resumed where it stopped, with the answer in its next request
    task = (await app_client.get(f"/tasks/{task_id}")).json()
    assert task["status"] == "completed", task
    assert "Blue." in last_user_text(llm.requests[1])
    assert llm.requests[1]["messages"][:2] == llm.requests[0]["messages"]


async def test_the_readme_checklist_is_rewritten_before_a_pause_and_at_the_end(
    app_client, enqueued, llm, monkeypatch
):
    # given a model that ends design and build at once, then asks a question while testing
    llm.script(finish("designed"), finish("built"), tool_call("ask_user", question="Ship it?"))
    written: list[list[str]] = []
    write = Workspace.write_readme

    def recorded(self: Workspace, **kwargs: object) -> None:
        written.append(list(kwargs["done"]))  # type: ignore[call-overload]
        write(self, **kwargs)  # type: ignore[arg-type]

    monkeypatch.setattr(Workspace, "write_readme", recorded)
    resp = await app_client.post("/tasks", json={"title": "ship", "complexity": 1})
    task_id = resp.json()["id"]
    # when it runs to the question, and on once it is answered
    await run_enqueued(enqueued)
    assert (await app_client.get(f"/tasks/{task_id}")).json()["status"] == "waiting_input"
    await app_client.post(f"/tasks/{task_id}/messages", json={"content": "Yes."})
    await run_enqueued(enqueued)
    assert (await app_client.get(f"/tasks/{task_id}")).json()["status"] == "completed"
    # then the checklist was written as the workspace was made, with the phases done before
    # the pause, and at the end: not again at each phase's end milliseconds apart
    assert written == [[], ["design", "build"],
                       ["design", "build", "test", "review", "complete"]]


async def test_unanswered_question_fails_after_the_timeout(
    app_client, enqueued, llm, monkeypatch
):
    # given a short answer timeout and a task that asked a question
    from app.core.config import reset_settings
    from app.ops.sweeper import sweep_once

    monkeypatch.setenv("TASKBENCH_INPUT_TIMEOUT_S", "0.2")
    reset_settings()
    llm.responder = Router().script("ask", tool_call("ask_user", question="Deadline?"))
    resp = await app_client.post("/tasks", json={"title": "ask", "complexity": 1})
    await run_enqueued(enqueued)
    # when nobody answers and the sweep runs after the timeout
    await asyncio.sleep(0.3)
    await sweep_once()
    # then the task failed saying so
    task = (await app_client.get(f"/tasks/{resp.json()['id']}")).json()
    assert task["status"] == "failed"
    assert task["error"] == "no answer within 0.2 s"


async def test_repeating_model_is_warned_then_escalated_then_stopped(app_client, enqueued, llm):
    # given a model that repeats the same call forever (junior escalates to gpt-4.1-mini)
    llm.responder = lambda _req: tool_call("list_files", path=".")
    # when the task runs
    resp = await app_client.post("/tasks", json={"title": "loop", "complexity": 1})
    await run_enqueued(enqueued)
    task_id = resp.json()["id"]
    # then: warned after 3 repeats, escalated after 3 more, stopped after 3 more
    task = (await app_client.get(f"/tasks/{task_id}")).json()
    assert task["status"] == "failed"
    assert task["error"] == ("AgentFailed: stuck: the same call list_files({\"path\": \".\"}) was"
                             " repeated 3 times in a row; no stronger model left to escalate to")
    assert [e["data"]["action"] for e in await events_of(app_client, task_id, "stuck")] \
        == ["warn"]
    escalated = await events_of(app_client, task_id, "escalated")
    assert [(e["data"]["from"], e["data"]["to"]) for e in escalated] \
        == [("openai/gpt-4o-mini", ENGINEER_MODEL)]
    assert [r["model"] for r in llm.requests] == ["openai/gpt-4o-mini"] * 6 + [ENGINEER_MODEL] * 3
    assert "You seem to be stuck" in last_user_text(llm.requests[3])
    assert f"You are now {ENGINEER_MODEL}" in last_user_text(llm.requests[6])


async def test_escalated_model_that_finishes_is_recorded(app_client, enqueued, llm):
    # given a weak model that repeats itself and a stronger one that finishes each phase
    llm.responder = lambda _req: tool_call("list_files")
    llm.script(finish("planned"), finish("built"), finish("tested"), model=ENGINEER_MODEL)
    # when the task runs
    resp = await app_client.post("/tasks", json={"title": "climb", "complexity": 1})
    await run_enqueued(enqueued)
    # then it completed and the last status event names the model that finished
    task = (await app_client.get(f"/tasks/{resp.json()['id']}")).json()
    assert task["status"] == "completed", task
    assert task["model_used"] == ENGINEER_MODEL
    final = (await events_of(app_client, task["id"], "status"))[-1]["data"]
    assert final["status"] == "completed" and final["finished_by"] == ENGINEER_MODEL
    finished = await events_of(app_client, task["id"], "finished")
    assert {e["data"]["model"] for e in finished} == {ENGINEER_MODEL}


def _call(name: str, args: str = "{}") -> dict:
    return {"id": "c", "type": "function", "function": {"name": name, "arguments": args}}


def _result(ok: bool = True, **data) -> Dispatched:
    return Dispatched("t", ok, "out", data, 0.0)


@pytest.mark.parametrize("steps, reason", [
    # the same call three times, even with its arguments spelled in another key order
    ([([_call("read_file", '{"a": 1, "b": 2}')], [_result()]),
      ([_call("read_file", '{"b": 2, "a": 1}')], [_result()]),
      ([_call("read_file", '{"a":1,"b":2}')], [_result()])],
     "repeated 3 times in a row"),
    # four steps in a row that fail (a test run exiting non-zero counts as failing)
    ([([_call("run_command", f'{{"n": {i}}}')], [_result(exit_code=1)]) for i in range(4)],
     "4 steps in a row failed"),
])
def test_detector_notices_repeats_and_failures(steps, reason):
    detector = StuckDetector()
    found = [detector.observe(calls, results) for calls, results in steps]
    assert found[:-1] == [None] * (len(steps) - 1)
    assert found[-1] is not None and reason in found[-1]


def test_detector_notices_no_progress_and_resets():
    # given steps that only revisit calls already made (or make none)
    detector = StuckDetector(no_progress=3)
    assert detector.observe([_call("list_files")], [_result()]) is None
    assert detector.observe([], []) is None
    assert detector.observe([_call("read_file", '{"p": 1}')], [_result()]) is None
    assert detector.observe([_call("list_files")], [_result()]) is None
    assert detector.observe([], []) is None
    assert detector.observe([_call("read_file", '{"p": 1}')], [_result()]) \
        == "no progress for 3 steps"
    # a new successful call is progress
    detector.reset()
    assert detector.observe([_call("write_file", '{"p": 2}')], [_result()]) is None
    assert detector.idle_steps == 0
