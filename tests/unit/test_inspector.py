"""The review phase: a separate inspector call that can send the work back to build."""

from __future__ import annotations

import pytest

from app.run.agent.inspector import parse_verdict
from tests.conftest import run_enqueued
from tests.fakes.llm_server import finish, text, tool_call
from tests.unit.loop_fixtures import Router, agent_named, events_of, requests_about, verdict

ENGINEER_MODEL = "openai/gpt-4.1-mini"
INSPECTOR_MODEL = "openai/gpt-4o-mini"  # the engineer's config.inspector_model


async def _submit(app_client, title: str, complexity: int) -> int:
    resp = await app_client.post("/tasks", json={"title": title, "complexity": complexity})
    assert resp.status_code == 201, resp.text
    return resp.json()["id"]


async def test_inspector_sends_work_back_once_then_passes(app_client, enqueued, llm):
    # given an engineer task whose first review finds a problem and whose second passes
    router = Router().script(
        "report",
        tool_call("write_file", path="PLAN.md", content="1. output/report.md 2. check it"),
        finish("planned"), finish("built v1"), finish("tested v1"),
        tool_call("write_file", path="output/report.md", content="# Report"),
        finish("built v2"), finish("tested v2"),
    ).review("report", verdict(0.4, "output/report.md is missing"), verdict(0.9))
    llm.responder = router
    # when it runs
    task_id = await _submit(app_client, "report", 5)
    await run_enqueued(enqueued)
    # then it went design → build → test → review → build → test → review and completed
    task = (await app_client.get(f"/tasks/{task_id}")).json()
    assert task["status"] == "completed", task
    phases = [e["data"]["phase"] for e in await events_of(app_client, task_id, "phase")]
    assert phases == ["design", "build", "test", "review", "build", "test", "review"]
    reviews = [e["data"] for e in await events_of(app_client, task_id, "review")]
    assert [(r["score"], r["verdict"], r["action"]) for r in reviews] == [
        (0.4, "revise", "revise"), (0.9, "pass", "accept")]
    assert reviews[0]["problems"] == ["output/report.md is missing"]
    # the findings reached the model, the inspector used its own model, prompt and JSON mode
    sent_back = requests_about(llm.requests, "report")[4]
    assert "output/report.md is missing" in sent_back["messages"][-1]["content"]
    inspections = requests_about(llm.requests, "report", inspector=True)
    assert [r["model"] for r in inspections] == [INSPECTOR_MODEL] * 2
    assert inspections[0]["response_format"] == {"type": "json_object"}
    assert "You are the inspector" in inspections[0]["messages"][0]["content"]
    assert "1. output/report.md 2. check it" in inspections[0]["messages"][1]["content"]
    assert "# Report" in inspections[1]["messages"][1]["content"]
    # the review is stored on the task, the agent's record counts both, and the worker finished
    assert task["review"]["score"] == 0.9 and len(task["review"]["history"]) == 2
    engineer = await agent_named(app_client, "engineer")
    assert (engineer["reviews_passed"], engineer["reviews_failed"]) == (1, 1)
    assert engineer["quality"] == 0.5
    assert task["model_used"] == ENGINEER_MODEL


async def test_reviews_are_bounded_by_max_reviews(app_client, enqueued, llm):
    # given an inspector that never passes the work (the engineer allows 2 reviews)
    router = Router()
    router.inspector["never"].extend([verdict(0.1, "bad")] * 5)
    llm.responder = router
    # when the task runs
    task_id = await _submit(app_client, "never", 5)
    await run_enqueued(enqueued)
    # then it was reviewed twice, sent back once, and ended with the failing review on record
    task = (await app_client.get(f"/tasks/{task_id}")).json()
    assert task["status"] == "completed"
    reviews = [e["data"] for e in await events_of(app_client, task_id, "review")]
    assert [r["action"] for r in reviews] == ["revise", "accept"]
    assert task["review"]["passed"] is False
    assert (await agent_named(app_client, "engineer"))["reviews_failed"] == 2


async def test_inspector_off_passes_without_a_call(app_client, enqueued, llm):
    # given the junior, whose inspector is off
    llm.responder = Router()
    # when a task runs
    task_id = await _submit(app_client, "small", 2)
    await run_enqueued(enqueued)
    # then review passed without any inspector request
    reviews = [e["data"] for e in await events_of(app_client, task_id, "review")]
    assert reviews == [{"verdict": "pass", "skipped": True,
                        "reason": "the inspector is off for this agent"}]
    assert not requests_about(llm.requests, "small", inspector=True)


async def test_unusable_inspector_reply_does_not_block_the_work(app_client, enqueued, llm):
    llm.responder = Router().review("odd", text("looks fine to me"))
    task_id = await _submit(app_client, "odd", 5)
    await run_enqueued(enqueued)
    task = (await app_client.get(f"/tasks/{task_id}")).json()
    assert task["status"] == "completed"
    assert "JSONDecodeError" in task["review"]["unusable"]
    engineer = await agent_named(app_client, "engineer")
    assert (engineer["reviews_passed"], engineer["reviews_failed"]) == (0, 0)


def test_parse_verdict_normalises_and_refuses():
    assert parse_verdict('```json\n{"score": 1.7, "problems": ["a"], "verdict": "PASS"}\n```') \
        == {"score": 1.0, "problems": ["a"], "verdict": "pass"}
    with pytest.raises(ValueError):
        parse_verdict('{"score": 0.5, "problems": [], "verdict": "maybe"}')
    with pytest.raises(KeyError):
        parse_verdict('{"problems": [], "verdict": "pass"}')
