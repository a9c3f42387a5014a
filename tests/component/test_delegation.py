"""Delegation: subtasks under one agent slot, results back to the parent, one budget per tree."""

from __future__ import annotations

import itertools
from pathlib import Path

import pytest

from tests.factories import run_enqueued
from tests.factories.loop import Router, agent_named, events_of, requests_about
from tests.fakes.llm_server import finish, tool_call, tool_calls


def _delegate(title: str) -> dict:
    return tool_call("delegate", title=title, description=f"Do {title}.", complexity=5)


async def _one_engineer_slot(app_client) -> None:
    engineer = await agent_named(app_client, "engineer")
    resp = await app_client.patch(f"/agents/{engineer['id']}", json={"max_concurrent": 1})
    assert resp.status_code == 200, resp.text


async def test_delegation_under_one_agent_slot_does_not_deadlock(app_client, enqueued, llm):
    # given one engineer slot and a parent that delegates a subtask of its own complexity
    await _one_engineer_slot(app_client)
    llm.responder = Router().script("parent", _delegate("child")).script(
        "child", finish("planned"),
        tool_call("write_file", path="output/answer.txt", content="42"), finish("wrote it"))
    resp = await app_client.post("/tasks", json={"title": "parent", "complexity": 5,
                                                 "budget": {"max_steps": 30}})
    parent_id = resp.json()["id"]
    # when the worker side runs whatever is enqueued until nothing is
    await run_enqueued(enqueued)
    # then both completed, the child first, on the one slot, and the slot is free again
    parent = (await app_client.get(f"/tasks/{parent_id}")).json()
    assert parent["status"] == "completed", parent
    [child_id] = parent["children"]
    child = (await app_client.get(f"/tasks/{child_id}")).json()
    assert child["status"] == "completed" and child["parent_id"] == parent_id
    assert (await agent_named(app_client, "engineer"))["active_tasks"] == 0
    statuses = [e["data"]["status"] for e in await events_of(app_client, parent_id, "status")]
    assert statuses == ["assigned", "waiting_children", "pending", "assigned", "completed"]
    # the child's budget came out of the parent's remaining one (30 steps - 1 used)
    assert child["budget"]["max_steps"] == 29
    # and the parent's next request carried the child's summary and its copied files
    resumed = requests_about(llm.requests, "parent")[1]["messages"][-1]["content"]
    assert f"Subtask #{child_id} \"child\": completed" in resumed
    assert f"subtasks/{child_id}/answer.txt" in resumed
    workspace = _workspace(parent)
    assert (workspace / "subtasks" / str(child_id) / "answer.txt").read_text() == "42"
    assert parent["resources"]["tree_steps"] == parent["usage"]["steps"] + child["usage"]["steps"]


def _workspace(task: dict) -> Path:
    from app.core.config import get_settings

    return get_settings().workspaces_dir / task["agent"] / str(task["id"])


async def test_budget_hit_mid_tree_stops_the_whole_tree_with_the_reason(
    app_client, enqueued, llm
):
    # given a parent with 8 steps that delegates two subtasks, the first of which never stops
    counter = itertools.count()
    router = Router().script("root", tool_calls(
        ("delegate", {"title": "busy", "description": "Work.", "complexity": 5}),
        ("delegate", {"title": "idle", "description": "Wait.", "complexity": 5})))
    router.default["busy"] = lambda _r: tool_call("write_file", path=f"n{next(counter)}.txt",
                                                  content="x")
    llm.responder = router
    resp = await app_client.post("/tasks", json={"title": "root", "complexity": 5,
                                                 "budget": {"max_steps": 8}})
    root_id = resp.json()["id"]
    # when everything runs
    await run_enqueued(enqueued)
    # then the busy child hit the tree's budget, and the root and the other child stopped too
    root = (await app_client.get(f"/tasks/{root_id}")).json()
    busy_id, idle_id = root["children"]
    busy = (await app_client.get(f"/tasks/{busy_id}")).json()
    idle = (await app_client.get(f"/tasks/{idle_id}")).json()
    reason = f"budget of task tree #{root_id} exhausted: step budget exhausted (8/8 steps)"
    assert busy["status"] == "failed" and reason in busy["error"]
    assert root["status"] == "failed" and reason in root["error"]
    assert idle["status"] == "cancelled" and idle["usage"]["steps"] == 0
    assert root["resources"]["tree_steps"] == 8
    assert root["usage"]["steps"] + busy["usage"]["steps"] + idle["usage"]["steps"] == 8


async def test_cancelling_a_waiting_parent_cancels_its_children(app_client, enqueued, llm):
    # given a parent waiting for a subtask that has not run yet
    await _one_engineer_slot(app_client)
    llm.responder = Router().script("boss", _delegate("worker"))
    resp = await app_client.post("/tasks", json={"title": "boss", "complexity": 5})
    parent_id = resp.json()["id"]
    from app.run.runner import run_task

    task_id, _queue = enqueued.pop(0)
    assert await run_task(task_id) == "ran"
    parent = (await app_client.get(f"/tasks/{parent_id}")).json()
    assert parent["status"] == "waiting_children"
    # when the parent is cancelled
    await app_client.post(f"/tasks/{parent_id}/cancel")
    # then the child is cancelled too, and a worker that gets it skips it
    child = (await app_client.get(f"/tasks/{parent['children'][0]}")).json()
    assert child["status"] == "cancelled"
    assert child["error"] == f"parent task {parent_id} ended cancelled"
    assert set(await run_enqueued(enqueued)) <= {"skipped"}
    assert (await agent_named(app_client, "engineer"))["active_tasks"] == 0


@pytest.mark.parametrize("db_url", ["sqlite", "postgres"], indirect=True)
async def test_shared_workspace_child_writes_where_the_parent_reads_and_they_talk(
    app_client, enqueued, llm
):
    # given a parent that lets its subtask work in its own workspace
    await _one_engineer_slot(app_client)
    router = Router()
    llm.responder = router
    resp = await app_client.post("/tasks", json={"title": "parent", "complexity": 5,
                                                 "budget": {"max_steps": 40}})
    parent_id = resp.json()["id"]
    router.script("parent", tool_call("delegate", title="child", description="Write the file.",
                                      complexity=5, shared_workspace=True),
                  tool_call("read_file", path="src/shared.txt"))
    router.script("child", tool_call("write_file", path="src/shared.txt", content="from child"),
                  tool_call("message_task", task_id=parent_id, content="see src/shared.txt"),
                  tool_call("message_task", task_id=999_999, content="stranger"))
    # when both run to the end
    await run_enqueued(enqueued)
    # then the child wrote into the parent's workspace, and the parent read it there
    parent = (await app_client.get(f"/tasks/{parent_id}")).json()
    assert parent["status"] == "completed", parent
    [child_id] = parent["children"]
    assert (_workspace(parent) / "src" / "shared.txt").read_text() == "from child"
    parent_asks = requests_about(llm.requests, "parent")
    tool_outputs = [m["content"] for r in parent_asks for m in r["messages"]
                    if m["role"] == "tool"]
    assert "from child" in tool_outputs
    # and the child's message reached the parent on the channel people use, while a message
    # to an unrelated task was refused
    texts = [m["content"] for m in parent_asks[-1]["messages"] if m["role"] == "user"]
    assert any(f"task:{child_id}" in t and "see src/shared.txt" in t for t in texts)
    child_outputs = [m["content"] for r in requests_about(llm.requests, "child")
                     for m in r["messages"] if m["role"] == "tool"]
    assert any("neither this task's parent nor one of its subtasks" in o for o in child_outputs)
    # the child kept out of the parent's README and did not get a workspace of its own
    assert (_workspace(parent) / "README.md").read_text().startswith("# parent")
    assert not (_workspace(parent).parent / str(child_id)).exists()
