"""A worker SIGKILLed while a command runs in the task's persistent shell: the jail dies with it
(nothing of the session is left on the host), and the task resumes on another worker in a new
session that starts where the old one was (folder, exported variables)."""

from __future__ import annotations

import os
import shutil
from pathlib import Path
from typing import Any

import pytest

from tests.chaos.support import ended, events, submit, tool_events, tool_results, workspace_of
from tests.fakes.llm_server import ScriptedLLM, finish, tool_call
from tests.integration.workers import WorkerProcess, wait_for, workers_alive

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not shutil.which("bwrap"), reason="bubblewrap not installed")]
STEPS = [
    tool_call("run_command", command="mkdir -p src/deep"),
    tool_call("run_command", command="cd src/deep"),
    tool_call("run_command", command="export MARK=kept"),
    tool_call("run_command", command="python -c 'import pathlib, time; "
                                     "pathlib.Path(\"/workspace/running\").touch(); "
                                     "time.sleep(120)'", timeout=300),
    tool_call("run_command", command="pwd"),
    tool_call("run_command", command="python -c 'import os; print(os.environ[\"MARK\"])'"),
]


def _sessions() -> set[int]:
    """Host pids of persistent-shell servers (their command line holds the server's source)."""
    found = set()
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            if b"Started once per task" in Path(f"/proc/{pid}/cmdline").read_bytes():
                found.add(int(pid))
        except OSError:
            pass
    return found


async def test_a_killed_workers_shell_dies_with_it_and_the_next_one_continues(
    api, worker_env, llm: ScriptedLLM, tmp_path: Path
) -> None:
    # given a model that moves into a folder, exports a variable, then runs a long command
    def respond(req: dict[str, Any]) -> dict[str, Any]:
        done = len(tool_results(req))
        return STEPS[done] if done < len(STEPS) else finish("done")

    llm.responder = respond
    before = _sessions()
    worker = WorkerProcess(worker_env, tmp_path / "w1.log")
    try:
        await wait_for(workers_alive, timeout=60)
        task_id = await submit(api)

        async def long_command_running() -> bool:
            root = await workspace_of(task_id)
            return bool(root and (root / "running").exists())

        await wait_for(long_command_running, timeout=90, interval=0.05)
        assert _sessions() - before, "the task's shell session is running"
        # when its worker is SIGKILLed mid-command
        worker.kill()

        async def session_gone() -> bool:
            return not (_sessions() - before)

        # then the session dies with it (bubblewrap's --die-with-parent), on its own
        await wait_for(session_gone, timeout=10, interval=0.1)
        second = WorkerProcess(worker_env, tmp_path / "w2.log")
        try:
            task = await wait_for(lambda: ended(task_id), timeout=120)
        finally:
            second.stop()
    finally:
        if worker.proc.poll() is None:
            worker.stop()
    # and the task resumed in a new session where the old one was
    assert task.status == "completed", task.error
    log = await events(api, task_id)
    outputs = [e["data"]["output"] for e in tool_events(log, "run_command")]
    assert outputs[-2].splitlines()[1] == "/workspace/src/deep"
    assert outputs[-1].splitlines()[1] == "kept"
    # the interrupted command was not run again: its outcome was reported as unknown
    told = [r for req in llm.requests for r in tool_results(req) if "is unknown" in r]
    assert told and "time.sleep(120)" in told[0]
