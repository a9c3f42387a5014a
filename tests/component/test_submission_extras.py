"""Files at creation, the redelivery cap, workspace pruning, complexity estimates."""

from __future__ import annotations

import json
import os
import time
from datetime import timedelta

import pytest
from sqlalchemy import update
from sqlmodel import col

from app.core.db import session_scope
from app.models import Task, utcnow
from app.sandbox.workspace import Workspace, prune_workspaces
from app.tasks.complexity import estimate_complexity
from tests.factories import run_enqueued
from tests.fakes.llm_server import finish, tool_call


async def test_files_given_at_creation_reach_the_workspace(app_client, enqueued, llm):
    # given a model that reads the uploaded file and copies it to output/
    llm.script(tool_call("read_file", path="input/data.csv"),
               tool_call("write_file", path="output/copy.csv", content="a,b"),
               finish("d"), finish("b"), finish("t"))
    # when the task and its file are submitted in one multipart request
    resp = await app_client.post(
        "/tasks/with-files",
        data={"task": json.dumps({"title": "copy the csv", "complexity": 1})},
        files={"files": ("data.csv", b"a,b\n1,2\n")})
    assert resp.status_code == 201, resp.text
    await run_enqueued(enqueued)
    # then the agent read it from input/
    read = [m["content"] for m in llm.requests[1]["messages"] if m["role"] == "tool"]
    assert read[0] == "a,b\n1,2\n"
    task = (await app_client.get(f"/tasks/{resp.json()['id']}")).json()
    assert task["status"] == "completed"


async def test_bad_task_json_in_multipart_is_422_naming_the_field(app_client):
    resp = await app_client.post(
        "/tasks/with-files", data={"task": json.dumps({"title": "x", "complexity": 42})},
        files={"files": ("a.txt", b"x")})
    assert resp.status_code == 422
    assert resp.json()["detail"][0]["loc"] == ["body", "task", "complexity"]


async def _delivered_again(app_client, enqueued, title: str, *, attempts: int,  # noqa: ANN001
                           tool_deaths: int) -> dict:
    """A task delivered `attempts` times before (`tool_deaths` of them died inside a tool),
    delivered once more and run here; the task as the API shows it afterwards."""
    resp = await app_client.post("/tasks", json={"title": title, "complexity": 1})
    task_id = resp.json()["id"]
    async with session_scope() as session:
        await session.execute(update(Task).where(col(Task.id) == task_id)
                              .values(attempts=attempts, tool_deaths=tool_deaths))
    await run_enqueued(enqueued)
    return (await app_client.get(f"/tasks/{task_id}")).json()


@pytest.mark.parametrize("db_url", ["sqlite", "postgres"], indirect=True)
async def test_task_that_keeps_killing_its_worker_ends_failed(app_client, enqueued, llm):
    # given a task whose runs died inside a tool call as often as allowed
    # when it is delivered once more
    task = await _delivered_again(app_client, enqueued, "poison", attempts=3, tool_deaths=3)
    # then it fails with the reason instead of running again, and frees its agent
    assert task["status"] == "failed"
    assert "keeps killing" in task["error"] and "3 times" in task["error"]
    assert llm.requests == []
    agents = (await app_client.get("/agents")).json()["data"]
    assert all(a["active_tasks"] == 0 for a in agents)


@pytest.mark.parametrize("db_url", ["sqlite", "postgres"], indirect=True)
async def test_deliveries_lost_outside_its_tools_never_fail_a_task(app_client, enqueued, llm):
    # given a task delivered three times before, each run lost while not in a tool (a worker
    # killed while it waited on the model: the infrastructure's doing, not the task's)
    llm.script(finish("planned"), finish("built"), finish("tested"))
    # when it is delivered once more, then it runs to its end
    task = await _delivered_again(app_client, enqueued, "unlucky", attempts=3, tool_deaths=0)
    assert task["status"] == "completed", task.get("error")


@pytest.mark.parametrize("db_url", ["sqlite", "postgres"], indirect=True)
async def test_a_task_delivered_without_end_ten_times_the_limit_fails(app_client, enqueued, llm):
    # given a task delivered 10 x max_deliveries times with no death in a tool
    # when it is delivered once more, then the cap on all deliveries ends it, saying why
    task = await _delivered_again(app_client, enqueued, "looping", attempts=30, tool_deaths=0)
    assert task["status"] == "failed"
    assert "delivered 31 times without ending" in task["error"]
    assert llm.requests == []


@pytest.mark.parametrize("db_url", ["sqlite", "postgres"], indirect=True)
async def test_a_delivery_after_a_death_in_a_tool_counts_it(app_client, enqueued, llm):
    # given a task whose last run renewed its lease from inside a tool, then went silent
    llm.script(finish("planned"), finish("built"), finish("tested"))
    resp = await app_client.post("/tasks", json={"title": "crashed", "complexity": 1})
    task_id = resp.json()["id"]
    async with session_scope() as session:
        await session.execute(update(Task).where(col(Task.id) == task_id).values(
            attempts=1, lease_owner="dead-worker:1", lease_activity="run_command",
            lease_expires_at=utcnow() - timedelta(seconds=60)))
    # when it is delivered again, then the lease counts a death in a tool and the run
    # goes on to the end
    await run_enqueued(enqueued)
    async with session_scope() as session:
        task = await session.get(Task, task_id)
    assert task is not None and task.status == "completed", task
    assert task.attempts == 2 and task.tool_deaths == 1 and task.lease_activity is None


@pytest.mark.parametrize("db_url", ["sqlite", "postgres"], indirect=True)
async def test_a_lease_held_by_a_live_worker_is_not_taken(app_client, enqueued, llm):
    from app.run.runner import run_task

    # given a task another worker holds, its lease still running
    resp = await app_client.post("/tasks", json={"title": "held", "complexity": 1})
    task_id = resp.json()["id"]
    async with session_scope() as session:
        await session.execute(update(Task).where(col(Task.id) == task_id).values(
            lease_owner="busy-worker:1", lease_expires_at=utcnow() + timedelta(seconds=60)))
    # when a second delivery reaches this worker, then it leaves the task alone
    assert await run_task(task_id, owner="this-worker:2") == "skipped"
    async with session_scope() as session:
        task = await session.get(Task, task_id)
    assert task is not None and task.lease_owner == "busy-worker:1" and task.attempts == 0
    assert llm.requests == []


def test_prune_removes_only_old_workspaces(tmp_path):
    old = Workspace.for_task(tmp_path, "junior", 1)
    new = Workspace.for_task(tmp_path, "junior", 2)
    for ws in (old, new):
        ws.create(title="t", description="d")
    week_ago = time.time() - 8 * 86400
    os.utime(old.root, (week_ago, week_ago))
    removed = prune_workspaces(tmp_path, 7 * 86400)
    assert removed == [old.root] and not old.root.exists() and new.root.exists()


def test_complexity_estimate_grows_with_the_work_named():
    assert estimate_complexity("fix typo", "") == 2
    heavy = estimate_complexity(
        "refactor", "migrate the API modules to the database, add pytest tests, research and "
        "cite sources " + "word " * 200)
    assert heavy >= 8


async def test_task_from_github_issue_url_takes_its_title_and_body(
    app_client, enqueued, tmp_path, monkeypatch
):
    from app.core.config import reset_settings
    from tests.fakes.github_server import FakeGitHub

    with FakeGitHub(tmp_path / "remote") as fake:
        monkeypatch.setenv("TASKBENCH_GITHUB_TOKEN", "tbtest-issue-token-123456")
        monkeypatch.setenv("TASKBENCH_GITHUB_API_URL", fake.url)
        reset_settings()
        url = fake.add_issue(7, "Fix the flaky widget", "It fails on Tuesdays.")
        # when a task names only the issue
        resp = await app_client.post("/tasks", json={"complexity": 1, "github": {"issue": url}})
        # then the issue's title and body become the task
        assert resp.status_code == 201, resp.text
        assert resp.json()["title"] == "Fix the flaky widget"
        assert resp.json()["description"] == "It fails on Tuesdays."
        bad = await app_client.post("/tasks", json={
            "complexity": 1, "github": {"issue": "https://example.com/not/an/issue"}})
        assert bad.status_code == 422
        assert bad.json()["detail"][0]["loc"] == ["body", "github", "issue"]


async def test_tool_resource_use_is_summed_on_the_task(app_client, enqueued, llm):
    # given a model that runs two commands in the jail and makes one refused call
    llm.script(tool_call("run_command", command="ls"),
               tool_call("run_command", command="python -c 'print(sum(range(10**6)))'"),
               tool_call("run_command", command="curl http://example.com"),
               finish("d"), finish("b"), finish("t"))
    resp = await app_client.post("/tasks", json={"title": "run", "complexity": 1})
    await run_enqueued(enqueued)
    # then the task shows the totals of what its tools used
    task = (await app_client.get(f"/tasks/{resp.json()['id']}")).json()
    res = task["resources"]
    assert res["tool_calls"] == 3 and res["tool_refusals"] == 1
    assert res["cpu_s"] > 0 and res["peak_rss_kb"] > 0 and res["tool_seconds"] > 0
    # and so does its report
    import io

    from pypdf import PdfReader

    pdf = await app_client.get(f"/tasks/{task['id']}/report.pdf")
    text = " ".join(p.extract_text() for p in PdfReader(io.BytesIO(pdf.content)).pages)
    assert "3 calls (1 refused)" in " ".join(text.split())
