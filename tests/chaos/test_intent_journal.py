"""A tool's effect happens once when its worker is SIGKILLed after the tool ran and before the
step was saved: the call was journaled (app.run.journal) and the resumed run reconciles it."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from tests.chaos.support import ended, events, submit, tool_results, workspace_of
from tests.fakes.llm_server import ScriptedLLM, finish, tool_call, tool_calls
from tests.integration.workers import WorkerProcess, wait_for, workers_alive

pytestmark = pytest.mark.slow
OWNER = "owner@example.com"


def _effects_reply(slow: bool) -> dict:  # type: ignore[type-arg]
    """One reply with three effects: an append, an email, and a command that is still running
    (it counts its runs in output/runs.txt) when the worker is killed."""
    code = ("open('output/runs.txt', 'a').write('x')\n"
            f"import time; time.sleep({60 if slow else 0})\n")
    return tool_calls(
        ("insert_lines", {"path": "output/log.txt", "line": 1, "text": "entry"}),
        ("send_email", {"to": OWNER, "subject": "progress", "body": "one entry added"}),
        ("run_python", {"code": code}),
    )


async def test_sigkill_after_effects_does_not_repeat_them(
    api, worker_env, llm: ScriptedLLM, tmp_path: Path
):
    # given a model that writes a log, then appends to it, mails, and runs a slow command
    first = {"reply": True}

    def respond(req: dict) -> dict:  # type: ignore[type-arg]
        done = tool_results(req)
        if not done:
            return tool_call("write_file", path="output/log.txt", content="start\n")
        if len(done) == 1:
            slow, first["reply"] = first["reply"], False
            return _effects_reply(slow)
        return finish("done")

    llm.responder = respond
    worker = WorkerProcess(worker_env, tmp_path / "w1.log")
    try:
        await wait_for(workers_alive, timeout=60)
        task_id = await submit(api, notify={"email": [OWNER]})

        async def command_running() -> bool:
            root = await workspace_of(task_id)
            return bool(root and (root / "output" / "runs.txt").is_file())

        await wait_for(command_running, timeout=60, interval=0.05)
        await asyncio.sleep(0.3)
        # when the worker is SIGKILLed while the reply's last call runs, and another starts
        worker.kill()
        second = WorkerProcess(worker_env, tmp_path / "w2.log")
        try:
            task = await wait_for(lambda: ended(task_id), timeout=90)
        finally:
            second.stop()
    finally:
        if worker.proc.poll() is None:
            worker.stop()
    # then the task completed, and the append, the email and the command happened once
    assert task.status == "completed", task.error
    root = Path(task.workspace)
    assert (root / "output" / "log.txt").read_text().count("entry") == 1
    assert (root / "output" / "runs.txt").read_text() == "x"
    mails = [p for p in (Path(worker_env["TASKBENCH_VAR_DIR"]) / "outbox").glob("*.eml")
             if "progress" in p.read_text(errors="replace")]
    assert len(mails) == 1
    # and the model was told plainly that the command's outcome is unknown
    told = [r for req in llm.requests for r in tool_results(req) if "is unknown" in r]
    assert told and "run_python" in told[0]
    log = await events(api, task_id)
    reconciled = [e["data"] for e in log if e["type"] == "tool_reconciled"]
    assert {e["tool"] for e in reconciled} == {"insert_lines", "send_email", "run_python"}


async def test_calls_that_started_and_never_finished_are_reconciled(
    app_client, enqueued, llm: ScriptedLLM, monkeypatch: pytest.MonkeyPatch
):
    """In-process, each reconcile rule: the worker "dies" (its run is cancelled) after a reply's
    four calls ran and before any was recorded done; one of them had not taken effect."""
    from sqlalchemy import update

    from app.core.db import session_scope
    from app.models import Task, utcnow
    from app.run import journal
    from app.run.runner import run_task

    # given a reply writing a file, appending a line, mailing and running a command
    reply = tool_calls(
        ("send_email", {"to": OWNER, "subject": "progress", "body": "b"}),
        ("write_file", {"path": "output/a.txt", "content": "alpha"}),
        ("insert_lines", {"path": "output/log.txt", "line": 1, "text": "entry"}),
        ("run_command", {"command": "touch output/ran"}),
    )

    def respond(req: dict) -> dict:  # type: ignore[type-arg]
        done = tool_results(req)
        if not done:  # the first command makes the task's venv (its events flush the step)
            return tool_call("run_command", command="true")
        if len(done) == 1:
            return tool_call("write_file", path="output/log.txt", content="start\n")
        return reply if len(done) == 2 else finish("done")

    llm.responder = respond

    close_intent = journal.close_intent

    async def die_before_marking_done(intent_id: int, result: Any) -> None:
        # the reply's command's done-mark (the others go with the step's record, never written
        # here); the first command, which made the venv, is marked done as usual
        if result.data.get("argv") != ["touch", "output/ran"]:
            return await close_intent(intent_id, result)
        raise asyncio.CancelledError

    monkeypatch.setattr(journal, "close_intent", die_before_marking_done)
    resp = await app_client.post("/tasks", json={"title": "t", "complexity": 2,
                                                 "notify": {"email": [OWNER]}})
    task_id = int(resp.json()["id"])
    enqueued.clear()
    with pytest.raises(asyncio.CancelledError):
        await run_task(task_id, owner="dead-worker")
    root = await workspace_of(task_id)
    assert root is not None
    # the append had not reached the file when the worker died (it was mid-call)
    (root / "output" / "log.txt").write_text("start\n")
    (root / "output" / "ran").unlink()
    monkeypatch.undo()
    async with session_scope() as session:  # the dead worker's lease runs out
        await session.execute(update(Task).where(Task.id == task_id)
                              .values(lease_expires_at=utcnow()))
    # when the task is run again
    assert await run_task(task_id, owner="second-worker") == "ran"
    # then the write and the email are recognised as done, the append (never applied) runs
    # now, and the command's outcome is reported as unknown, not repeated
    task = (await app_client.get(f"/tasks/{task_id}")).json()
    assert task["status"] == "completed", task["error"]
    assert (root / "output" / "log.txt").read_text().count("entry") == 1
    assert not (root / "output" / "ran").exists()
    log = await events(app_client, task_id)
    outcomes = {e["data"]["tool"]: e["data"]["outcome"] for e in log
                if e["type"] == "tool_reconciled"}
    assert outcomes == {"write_file": "done", "send_email": "done", "run_command": "unknown"}
    resumed_at = next(e["seq"] for e in log if e["type"] == "reply_resumed")
    reran = [e for e in log if e["seq"] > resumed_at and e["type"] == "tool_call"]
    assert [e["data"]["tool"] for e in reran][:1] == ["insert_lines"]
    assert reran[0]["data"]["ok"]
    told = [r for req in llm.requests for r in tool_results(req) if "is unknown" in r]
    assert told and "run_command" in told[0] and "touch output/ran" in told[0]


APPEND_ONCE = {
    "name": "append_once",
    "description": "Writes a log, appends one line to it, then writes another file.",
    "inputs": {},
    "steps": [
        {"id": "start", "tool": "write_file",
         "args": {"path": "output/log.txt", "content": "start\n"}},
        {"id": "append", "tool": "insert_lines",
         "args": {"path": "output/log.txt", "line": 1, "text": "entry"}},
        {"id": "after", "tool": "write_file", "args": {"path": "output/after.txt", "content": "x"}},
    ],
}


async def test_a_playbook_step_that_ran_before_the_worker_died_is_not_repeated(
    app_client, enqueued, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    import yaml
    from sqlalchemy import update

    from app.core.db import session_scope
    from app.kinds.playbook import schema as playbook_schema
    from app.models import Task, utcnow
    from app.run.runner import run_task

    # given a playbook whose second step appends a line
    folder = tmp_path / "playbooks"
    folder.mkdir()
    (folder / "append_once.yaml").write_text(yaml.safe_dump(APPEND_ONCE), encoding="utf-8")
    monkeypatch.setattr(playbook_schema, "PLAYBOOKS_DIR", folder)
    resp = await app_client.post("/tasks", json={
        "title": "t", "complexity": 2, "kind": "playbook", "playbook": "append_once",
        "inputs": {}})
    assert resp.status_code == 201, resp.text
    task_id = int(resp.json()["id"])
    enqueued.clear()
    from app.run import context

    real_store = context.store_step

    async def die_after_the_append(task_id: int, record: Any, *rest: Any) -> Any:
        if any(r.name == "insert_lines" for r in record.tool_results):
            raise asyncio.CancelledError
        return await real_store(task_id, record, *rest)

    # when the worker dies after the append took effect, before its step was saved
    with monkeypatch.context() as patch:
        patch.setattr(context, "store_step", die_after_the_append)
        with pytest.raises(asyncio.CancelledError):
            await run_task(task_id, owner="dead-worker")
    async with session_scope() as session:
        await session.execute(update(Task).where(Task.id == task_id)
                              .values(lease_expires_at=utcnow()))
    assert await run_task(task_id, owner="second-worker") == "ran"
    # then the resumed run recognises the append and does not make it again
    task = (await app_client.get(f"/tasks/{task_id}")).json()
    assert task["status"] == "completed", task["error"]
    root = await workspace_of(task_id)
    assert root is not None
    assert (root / "output" / "log.txt").read_text().count("entry") == 1
    assert (root / "output" / "after.txt").read_text() == "x"
    log = await events(app_client, task_id)
    assert [e["data"]["tool"] for e in log if e["type"] == "tool_reconciled"] == ["insert_lines"]
