"""GitHub deliverables against a fake REST API on loopback and a local bare repository."""

# ruff: noqa: F811  (pytest fixtures imported from deliver_fixtures are re-bound as arguments)
from __future__ import annotations

import json
import logging
import subprocess
from pathlib import Path

import pytest
from sqlmodel import select

from app.core.config import reset_settings
from app.core.db import session_scope
from app.integrations import after_end, prepare
from app.integrations.github import issue_to_task, mirror_for
from app.models import Task, TaskEvent
from app.sandbox.workspace import Workspace
from app.tools.github import open_pull_request
from tests.factories.deliver import create_task, engine, settings, tool_context  # noqa: F401
from tests.fakes.github_server import FakeGitHub

TOKEN = "tbtest-PLANTED-4f9a1c7e2b8d6053"


@pytest.fixture
def gh(tmp_path, settings, monkeypatch):
    with FakeGitHub(tmp_path / "remote") as fake:
        monkeypatch.setenv("TASKBENCH_GITHUB_TOKEN", TOKEN)
        monkeypatch.setenv("TASKBENCH_GITHUB_API_URL", fake.url)
        monkeypatch.setenv("TASKBENCH_GIT_ALLOW_FILE_REMOTES", "1")
        fake.settings = reset_settings()
        yield fake


def git_show(bare: Path, spec: str) -> str:
    return subprocess.run(
        ["git", "--git-dir", str(bare), "show", spec], capture_output=True, text=True, check=True
    ).stdout


def plant_traps(src: Path, marker: Path) -> None:
    """What a hostile agent could leave in its clone to run code in the host's git."""
    hooks = src / ".git" / "hooks"
    for name in ("pre-commit", "post-commit", "pre-push", "post-checkout", "reference-transaction"):
        (hooks / name).write_text(f"#!/bin/sh\ntouch {marker}\n")
        (hooks / name).chmod(0o755)
    with open(src / ".git" / "config", "a") as fh:
        fh.write(f'[core]\n\tfsmonitor = touch {marker}\n[filter "x"]\n\tclean = touch {marker}\n')
    (src / ".gitattributes").write_text("* filter=x\n")


async def test_pull_request_opened_once_updated_after_and_token_never_leaks(
    engine, gh, tmp_path, caplog
):
    caplog.set_level(logging.DEBUG)
    s = gh.settings
    issue = gh.add_issue(7, "Add a gizmo", "We need a gizmo next to the widget.")
    task = await create_task(
        engine,
        s,
        status="build",
        summary=None,
        github={"repo": gh.full_name, "base_branch": "main", "issue": issue},
    )
    ws = Workspace(Path(task.workspace))
    events: list = []
    ctx = tool_context(task, s, events=events)

    # given the repository was cloned into src/ before the agent started
    await prepare(task.model_dump(), ws, s, ctx.emit)
    assert (ws.src / "widgets.py").read_text().startswith("def widget")

    # when the agent changes code (and plants traps) and opens a PR
    marker = tmp_path / "pwned"
    plant_traps(ws.src, marker)
    (ws.src / "gizmo.py").write_text("def gizmo():\n    return 2\n")
    first = await open_pull_request(ctx, title="Add gizmo", body="Adds `gizmo()`.")

    # then the branch arrived with the agent's work and exactly one PR is recorded
    branch = f"taskbench/task-{task.id}"
    sha1 = gh.branch_sha(branch)
    assert sha1 and "def gizmo" in git_show(gh.bare, f"{branch}:gizmo.py")
    assert len(gh.pulls) == 1
    pr = gh.pulls[0]
    assert (pr["head"], pr["base"], pr["title"]) == (branch, "main", "Add gizmo")
    assert "Adds `gizmo()`." in pr["body"] and f"/tasks/{task.id}/report.pdf" in pr["body"]
    assert "#1" in first.output
    assert not marker.exists()

    # when the agent changes more and calls it again
    (ws.src / "gizmo.py").write_text("def gizmo():\n    return 3\n")
    await open_pull_request(ctx, title="Add gizmo v2", body="Adds `gizmo()`, better.")

    # then the same PR is updated and the branch moved forward on top of the first commit
    assert len(gh.pulls) == 1 and gh.pulls[0]["title"] == "Add gizmo v2"
    sha2 = gh.branch_sha(branch)
    assert sha2 != sha1 and git_show(gh.bare, f"{sha2}^").startswith(f"commit {sha1}")
    assert not any(
        r["method"] == "POST" and r["path"].endswith("/pulls")
        for r in gh.requests[
            gh.requests.index(next(r for r in gh.requests if r["method"] == "PATCH")) :
        ]
    )

    # when the task ends (twice, as a redelivered task would)
    async with session_scope(engine) as session:
        row = await session.get(Task, task.id)
        row.status, row.summary = "completed", "Gizmo added with tests."
        row.review = {"verdict": "pass", "score": 9, "findings": ["Small and tested"]}
        session.add(row)
    await after_end(task.id, engine=engine)
    await after_end(task.id, engine=engine)

    # then the PR carries the summary and verdict, and the issue has one comment
    body = gh.pulls[0]["body"]
    assert "Gizmo added with tests." in body and "pass" in body and "Small and tested" in body
    assert "Adds `gizmo()`, better." in body
    assert len(gh.comments) == 1 and "Gizmo added with tests." in gh.comments[0]["body"]
    assert len(gh.pulls) == 1

    # and the token was used for the API but appears nowhere else
    assert any(TOKEN in (r["auth"] or "") for r in gh.requests)
    for path in Path(task.workspace).rglob("*"):
        if path.is_file():
            assert TOKEN.encode() not in path.read_bytes(), path
    for path in mirror_for(task.id, s).rglob("*"):
        if path.is_file():
            assert TOKEN.encode() not in path.read_bytes(), path
    async with session_scope(engine) as session:
        stored = (await session.exec(select(TaskEvent).where(TaskEvent.task_id == task.id))).all()
    assert stored and TOKEN not in json.dumps([e.data for e in stored])
    assert TOKEN not in json.dumps(events)
    assert TOKEN not in caplog.text
    assert all(TOKEN not in json.dumps(p) for p in gh.pulls + gh.comments)
    assert not marker.exists()


async def test_issue_url_becomes_a_task(gh):
    url = gh.add_issue(12, "Fix the flaky widget", "It fails on Tuesdays.")
    assert await issue_to_task(url, gh.settings) == (
        "Fix the flaky widget",
        "It fails on Tuesdays.",
    )
    with pytest.raises(ValueError):
        await issue_to_task("https://example.com/not/an/issue", gh.settings)


async def test_open_pull_request_refused_without_repo(engine, settings):
    from app.tools.errors import ToolRefused

    task = await create_task(engine, settings, status="build")
    with pytest.raises(ToolRefused):
        await open_pull_request(tool_context(task, settings), title="x", body="y")
