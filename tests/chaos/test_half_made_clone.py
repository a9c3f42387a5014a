"""A clone a dead delivery left half made (git had written src/.git and part of the tree when
the worker was SIGKILLed) is made again by the next delivery: no `cloned` event was written for
it. A finished clone (its event written) is kept, with the agent's work in it."""

# ruff: noqa: F811  (fixtures imported from the GitHub tests are re-bound as arguments)
from __future__ import annotations

from pathlib import Path

from app.core.db import session_scope
from app.integrations import prepare
from app.models import TaskEvent
from app.sandbox.workspace import Workspace
from tests.component.test_github import gh  # noqa: F401
from tests.factories.deliver import create_task, engine, settings  # noqa: F401


async def test_a_half_made_clone_is_made_again_and_a_whole_one_kept(engine, gh):
    # given a task on a repository whose first delivery died in the middle of `git clone`
    s = gh.settings
    task = await create_task(engine, s, status="build",
                             github={"repo": gh.full_name, "base_branch": "main"})
    ws = Workspace(Path(task.workspace))
    (ws.src / ".git").mkdir(parents=True)
    (ws.src / ".git" / "HEAD").write_text("ref: refs/heads/main\n")  # and nothing else yet
    (ws.src / "widg").write_text("half a file")
    events: list = []

    async def emit(type_: str, data: dict) -> None:  # durable, as the runner's emit is
        async with session_scope(engine) as session:
            session.add(TaskEvent(task_id=task.id, seq=len(events) + 100, type=type_, data=data))
        events.append({"type": type_, "data": data})

    # when the next delivery prepares the workspace
    await prepare(task.model_dump(), ws, s, emit)
    # then the clone is whole: the repository's files, none of the half-made ones
    assert (ws.src / "widgets.py").read_text().startswith("def widget")
    assert not (ws.src / "widg").exists()
    assert [e["data"]["action"] for e in events if e["type"] == "github"] == ["cloned"]

    # when the agent works in it and a later delivery prepares again
    (ws.src / "gizmo.py").write_text("def gizmo():\n    return 2\n")
    await prepare(task.model_dump(), ws, s, emit)
    # then its work is kept (the finished clone is not made again)
    assert (ws.src / "gizmo.py").is_file()
