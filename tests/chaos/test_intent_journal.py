"""A tool's effect happens once when its worker is SIGKILLed after the tool ran and before the
step was saved: the call was journaled (app.run.journal) and the resumed run reconciles it."""

from __future__ import annotations

import asyncio
from pathlib import Path

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
