"""The pipeline end to end in one process: submit over REST, run as the worker would, read back."""

from __future__ import annotations

from tests.factories import auth, new_user_key, run_enqueued
from tests.fakes.llm_server import finish, tool_call


async def test_task_runs_through_phases_and_completes(app_client, enqueued, llm):
    # given a model that writes a plan, builds a file and finishes each phase
    llm.script(
        tool_call("write_file", path="PLAN.md", content="1. write hello.py"),
        finish("plan ready"),
        tool_call("write_file", path="output/hello.txt", content="hello"),
        finish("built hello"),
        finish("checked: hello.txt exists"),
    )
    # when a task is submitted and the worker side runs it
    resp = await app_client.post("/tasks", json={"title": "Say hello", "complexity": 2})
    assert resp.status_code == 201, resp.text
    task_id = resp.json()["id"]
    assert resp.json()["status"] == "assigned"
    assert await run_enqueued(enqueued) == ["ran"]
    # then it completed, with usage, phases as events and the artifact downloadable
    task = (await app_client.get(f"/tasks/{task_id}")).json()
    assert task["status"] == "completed", task
    assert task["summary"] == "checked: hello.txt exists"
    assert task["usage"]["steps"] == 5 and task["usage"]["prompt_tokens"] == 50
    events = (await app_client.get(f"/tasks/{task_id}/events")).json()["data"]
    phases = [e["data"]["phase"] for e in events if e["type"] == "phase"]
    assert phases == ["design", "build", "test", "review"]
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    statuses = [e["data"]["status"] for e in events if e["type"] == "status"]
    assert statuses == ["assigned", "completed"]
    arts = (await app_client.get(f"/tasks/{task_id}/artifacts")).json()
    assert [a["path"] for a in arts] == ["hello.txt"]
    got = await app_client.get(f"/tasks/{task_id}/artifacts/hello.txt")
    assert got.status_code == 200 and got.text == "hello"


async def test_bad_tool_calls_become_observations(app_client, enqueued, llm):
    # given a model that sends broken JSON, an unknown tool and an escaping path
    llm.script(
        {"tool_calls": [("write_file", "{not json")]},
        tool_call("no_such_tool", x=1),
        tool_call("write_file", path="../escape.txt", content="x"),
        finish("design"), finish("build"), finish("test"),
    )
    resp = await app_client.post("/tasks", json={"title": "t", "complexity": 1})
    await run_enqueued(enqueued)
    task = (await app_client.get(f"/tasks/{resp.json()['id']}")).json()
    assert task["status"] == "completed"
    tool_msgs = [m["content"] for m in llm.requests[3]["messages"] if m["role"] == "tool"]
    assert "not valid JSON" in tool_msgs[0]
    assert "unknown tool" in tool_msgs[1]
    assert tool_msgs[2].startswith("Refused:")


async def test_budget_exhaustion_fails_with_reason(app_client, enqueued, llm):
    llm.responder = lambda _req: tool_call("list_files")
    resp = await app_client.post("/tasks", json={"title": "loop", "complexity": 1,
                                                 "budget": {"max_steps": 4}})
    await run_enqueued(enqueued)
    task = (await app_client.get(f"/tasks/{resp.json()['id']}")).json()
    assert task["status"] == "failed"
    assert "step budget exhausted (4/4 steps)" in task["error"]
    assert len(llm.requests) == 4


async def test_other_users_task_is_404(app_client, enqueued, llm):
    resp = await app_client.post("/tasks", json={"title": "mine", "complexity": 1})
    other = await new_user_key("other@example.com")
    got = await app_client.get(f"/tasks/{resp.json()['id']}", headers=auth(other))
    assert got.status_code == 404
    listed = await app_client.get("/tasks", headers=auth(other))
    assert listed.json()["count"] == 0


async def test_uncovered_complexity_is_refused_naming_ranges(app_client):
    agents = (await app_client.get("/agents")).json()["data"]
    architect = next(a for a in agents if a["name"] == "architect")  # covers 6-10
    await app_client.patch(f"/agents/{architect['id']}", json={"status": "disabled"})
    resp = await app_client.post("/tasks", json={"title": "hard", "complexity": 9})
    assert resp.status_code == 422
    detail = resp.json()["detail"][0]
    assert detail["loc"] == ["body", "complexity"]
    assert "1-3" in detail["msg"] and "3-7" in detail["msg"]
