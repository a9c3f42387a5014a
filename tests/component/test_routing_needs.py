"""Routing by what a task needs: a GitHub task goes to an agent that can open its pull request."""

from __future__ import annotations

import pytest

from app.core.config import reset_settings
from tests.conftest import run_enqueued
from tests.factories.loop import Router, agent_named, events_of
from tests.fakes.github_server import FakeGitHub
from tests.fakes.llm_server import finish, tool_call


@pytest.fixture
def gh(tmp_path, monkeypatch):
    with FakeGitHub(tmp_path / "remote") as fake:
        monkeypatch.setenv("TASKBENCH_GITHUB_TOKEN", "tbtest-routing-token-123456")
        monkeypatch.setenv("TASKBENCH_GITHUB_API_URL", fake.url)
        monkeypatch.setenv("TASKBENCH_GIT_ALLOW_FILE_REMOTES", "1")
        reset_settings()
        yield fake
    reset_settings()


async def test_simple_github_task_gets_a_pr_capable_agent_and_one_pr(app_client, enqueued, llm,
                                                                     gh):
    # given a model that fixes a file in the clone and opens a pull request while building
    llm.responder = Router().script(
        "typo fix",
        finish("plan: fix the docstring"),
        tool_call("write_file", path="src/NOTES.md", content="fixed\n"),
        tool_call("open_pull_request", title="Fix typo", body="Fixes the typo."),
        finish("built"), finish("tested"),
    )
    # when a complexity-2 task with a repository is submitted and runs
    resp = await app_client.post("/tasks", json={
        "title": "typo fix", "complexity": 2,
        "github": {"repo": gh.full_name, "base_branch": "main"}})
    assert resp.status_code == 201, resp.text
    await run_enqueued(enqueued)
    # then it went to an agent that has open_pull_request (not junior), and exactly one PR opened
    task = (await app_client.get(f"/tasks/{resp.json()['id']}")).json()
    assert task["status"] == "completed", task
    assert task["agent"] == "engineer"
    assert "open_pull_request" not in (await agent_named(app_client, "junior"))["allowed_tools"]
    assert len(gh.pulls) == 1 and gh.pulls[0]["title"] == "Fix typo"
    opened = [e for e in await events_of(app_client, task["id"], "github")
              if e["data"]["action"] == "pr_opened"]
    assert len(opened) == 1


async def test_issue_url_alone_names_the_repository_and_needs_a_pr(app_client, enqueued, gh):
    url = gh.add_issue(3, "Fix the widget", "It wobbles.")
    resp = await app_client.post("/tasks", json={"complexity": 1, "github": {"issue": url}})
    assert resp.status_code == 201, resp.text
    assert resp.json()["agent"] == "engineer"
    assert resp.json()["github"]["repo"] == gh.full_name


async def test_task_without_needs_still_goes_by_complexity(app_client, enqueued):
    resp = await app_client.post("/tasks", json={"title": "haiku", "complexity": 2,
                                                 "notify": {"email": ["a@example.com"]}})
    assert resp.json()["agent"] == "junior"  # the end email is the service's, not a tool


async def test_github_task_no_agent_can_serve_is_a_422_naming_the_tool(app_client):
    # given only junior (no open_pull_request) is enabled
    for name in ("engineer", "architect"):
        agent = await agent_named(app_client, name)
        await app_client.patch(f"/agents/{agent['id']}", json={"status": "disabled"})
    # when a GitHub task is submitted
    resp = await app_client.post("/tasks", json={
        "title": "pr please", "complexity": 2, "github": {"repo": "acme/widgets"}})
    # then it is refused, naming the field and the missing tool
    assert resp.status_code == 422, resp.text
    detail = resp.json()["detail"][0]
    assert detail["loc"] == ["body", "github"]
    assert "open_pull_request (for github.repo)" in detail["msg"]
    assert "no enabled agent has the tools" in detail["msg"]
    assert (await app_client.get("/tasks")).json()["count"] == 0


async def test_pinned_agent_without_the_tool_is_a_422(app_client):
    resp = await app_client.post("/tasks", json={
        "title": "pr please", "complexity": 2, "agent": "junior",
        "github": {"repo": "acme/widgets"}})
    assert resp.status_code == 422
    assert "agent junior" in resp.json()["detail"][0]["msg"]
    assert "open_pull_request" in resp.json()["detail"][0]["msg"]


async def test_playbook_needs_the_tools_its_steps_call(app_client):
    # given an agent that can only read files, pinned by the submission
    created = await app_client.post("/agents", json={
        "name": "reader", "model": "openai/gpt-4o-mini", "min_complexity": 1,
        "max_complexity": 10, "allowed_tools": ["read_file", "finish"]})
    assert created.status_code == 201, created.text
    # when it is asked to run the research playbook
    resp = await app_client.post("/tasks", json={
        "kind": "playbook", "playbook": "research_report", "agent": "reader", "complexity": 3,
        "inputs": {"topic": "queues"}})
    # then the 422 names the playbook and the tools it lacks
    assert resp.status_code == 422, resp.text
    detail = resp.json()["detail"][0]
    assert detail["loc"] == ["body", "playbook"]
    assert "web_search (for playbook research_report)" in detail["msg"]
