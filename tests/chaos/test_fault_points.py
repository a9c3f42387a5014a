"""A real worker SIGKILLed exactly at a named fault point (tests/chaos/faults.py): after the
workspace is made, while uv makes the venv, after a tool ran and before its step was saved,
and in the middle of the deliverables. Another worker takes over; the task completes, and
every effect (an append, a command, an email, a pull request) happened once."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from tests.chaos import faults
from tests.chaos.support import ended, events, submit, tool_results
from tests.fakes.llm_server import ScriptedLLM, finish, tool_call, tool_calls
from tests.integration.workers import WorkerProcess, task_row, wait_for, workers_alive

pytestmark = pytest.mark.slow
OWNER = "owner@example.com"
RUN_ONCE = "open('output/runs.txt', 'a').write('x')"


def _effects(req: dict[str, Any]) -> dict[str, Any]:
    """A file; a command and an append to the file in one reply; an email; the end."""
    done = len(tool_results(req))
    if done == 0:
        return tool_call("write_file", path="output/log.txt", content="start\n")
    if done == 1:
        return tool_calls(
            ("run_python", {"code": RUN_ONCE}),
            ("insert_lines", {"path": "output/log.txt", "line": 1, "text": "entry-once"}))
    if done == 3:
        return tool_call("send_email", to=OWNER, subject="progress", body="one entry added")
    return finish("done")


async def _through_kill(api: Any, env: dict[str, str], tmp_path: Path, point: str,
                        **body: Any) -> tuple[int, Any]:
    """Submit with `point` armed on two workers: the one that reaches it dies there, the other
    takes the task over."""
    folder = tmp_path / "faults"
    faults.arm(folder, point)
    armed = faults.worker_env(env, folder)
    workers = [WorkerProcess(armed, tmp_path / f"w{i}.log") for i in (1, 2)]
    try:
        await wait_for(lambda: _alive(2), timeout=60)
        task_id = await submit(api, **body)
        task = await wait_for(lambda: ended(task_id), timeout=90)
    finally:
        for worker in workers:
            worker.kill()  # throwaway workers: no warm shutdown to wait for
    assert faults.fired(folder, point) == 1
    return task_id, task


async def _alive(n: int) -> bool:
    return await workers_alive() >= n


async def _assert_once(api: Any, env: dict[str, str], task_id: int, task: Any) -> None:
    assert task.status == "completed", task.error
    root = Path(task.workspace)
    assert (root / "output" / "log.txt").read_text().count("entry-once") == 1
    assert (root / "output" / "runs.txt").read_text() == "x"
    assert task.attempts == 2
    log = await events(api, task_id)
    mails = [p for p in (Path(env["TASKBENCH_VAR_DIR"]) / "outbox").glob("*.eml")
             if "progress" in p.read_text(errors="replace")]
    assert len(mails) == 1
    sends = [e for e in log if e["type"] == "tool_call" and e["data"]["tool"] == "send_email"]
    assert len(sends) == 1


@pytest.mark.parametrize("point", ["workspace_created", "mid_venv", "tool_ran"])
async def test_a_kill_at_a_fault_point_loses_and_repeats_nothing(
    api, worker_env, llm: ScriptedLLM, tmp_path: Path, point: str
):
    # given a task that appends, runs a command and mails, on a worker armed to die at `point`
    llm.responder = _effects
    # when the worker is SIGKILLed there and another takes over
    task_id, task = await _through_kill(api, worker_env, tmp_path, point,
                                        notify={"email": [OWNER]})
    # then the task completed with each effect once
    await _assert_once(api, worker_env, task_id, task)
    if point == "tool_ran":  # the step was never saved: the resumed run reconciled the reply
        log = await events(api, task_id)
        assert {e["data"]["tool"] for e in log if e["type"] == "tool_reconciled"} >= {
            "insert_lines"}


async def test_kills_while_waiting_on_the_model_never_fail_a_task(
    api, worker_env, llm: ScriptedLLM, tmp_path: Path
):
    # given a task of two commands whose worker dies whenever the run waits on the model (a
    # second in, the command's end recorded), as often as max_deliveries (3)
    def respond(req: dict[str, Any]) -> dict[str, Any]:
        done = len(tool_results(req))
        return (tool_call("run_python", code=RUN_ONCE) if done < 2
                else finish("done"))

    llm.responder = respond
    folder = tmp_path / "faults"
    faults.arm(folder, "model_wait", times=3)
    task_id = await submit(api)
    # when each dead worker is replaced by a fresh one
    task = await _replacing_dead_workers(faults.worker_env(worker_env, folder), tmp_path,
                                         task_id)
    # then the task completed: deaths outside a tool call do not count toward max_deliveries
    assert faults.fired(folder, "model_wait") == 3
    assert task.status == "completed", task.error
    assert task.attempts == 4 and task.tool_deaths == 0


async def test_a_task_that_keeps_killing_its_worker_inside_a_command_fails(
    api, worker_env, llm: ScriptedLLM, tmp_path: Path
):
    # given a task whose command kills its worker every time it runs
    llm.responder = lambda req: tool_call("run_python", code=RUN_ONCE)
    folder = tmp_path / "faults"
    faults.arm(folder, "in_tool", times=5)
    task_id = await submit(api)
    # when each dead worker is replaced by a fresh one
    task = await _replacing_dead_workers(faults.worker_env(worker_env, folder), tmp_path,
                                         task_id)
    # then it failed after max_deliveries (3) deaths inside its command, not before
    assert faults.fired(folder, "in_tool") == 3
    assert task.status == "failed" and "keeps killing its worker" in task.error
    assert task.tool_deaths == 3


async def _replacing_dead_workers(env: dict[str, str], tmp_path: Path, task_id: int) -> Any:
    """Two workers up until the task ends: a dead one is replaced at once."""
    workers: list[WorkerProcess] = []
    try:
        while not await ended(task_id):
            while sum(w.proc.poll() is None for w in workers) < 2:
                workers.append(WorkerProcess(env, tmp_path / f"w{len(workers)}.log"))
            await asyncio.sleep(0.2)
        return await ended(task_id)
    finally:
        for worker in workers:
            worker.kill()  # throwaway workers: no warm shutdown to wait for


async def test_a_kill_mid_delivery_is_delivered_again_once(
    api, worker_env, llm: ScriptedLLM, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
):
    from app.core.config import reset_settings
    from tests.fakes.github_server import FakeGitHub

    # given a task on a GitHub repository (a fake on loopback) and its issue, that opens a PR
    def respond(req: dict[str, Any]) -> dict[str, Any]:
        done = len(tool_results(req))
        if done == 0:
            return tool_call("write_file", path="src/gizmo.py", content="def gizmo():\n    pass\n")
        if done == 1:
            return tool_call("open_pull_request", title="Add gizmo", body="Adds gizmo().")
        return finish("Gizmo added.")

    llm.responder = respond
    with FakeGitHub(tmp_path / "remote") as gh:
        github = {"TASKBENCH_GITHUB_TOKEN": "tbtest-" + "9" * 20,
                  "TASKBENCH_GITHUB_API_URL": gh.url, "TASKBENCH_GIT_ALLOW_FILE_REMOTES": "1"}
        for key, value in github.items():
            monkeypatch.setenv(key, value)
        reset_settings()
        issue = gh.add_issue(7, "Add a gizmo", "We need a gizmo.")
        # when the worker delivering dies after the report was made, before the PR and the
        # issue were told of the end (the other worker lives on)
        folder = tmp_path / "faults"
        faults.arm(folder, "mid_delivery")
        armed = faults.worker_env({**worker_env, **github}, folder)
        workers = [WorkerProcess(armed, tmp_path / f"w{i}.log") for i in (1, 2)]

        async def delivered() -> bool:
            return bool(gh.comments) and "Gizmo added." in gh.pulls[0]["body"]

        try:
            await wait_for(lambda: _alive(2), timeout=60)
            task_id = await submit(api, notify={"email": [OWNER]}, github={
                "repo": gh.full_name, "base_branch": "main", "issue": issue})
            await wait_for(delivered, timeout=120)
            await asyncio.sleep(2)  # time enough for a second delivery, were there one
        finally:
            for worker in workers:
                worker.kill()  # throwaway workers: no warm shutdown to wait for
        # then the PR was opened once and updated with the end, the issue commented once
        task = await task_row(task_id)
        assert faults.fired(folder, "mid_delivery") == 1
        assert task.status == "completed", task.error
        assert len(gh.pulls) == 1 and len(gh.comments) == 1
        assert [r["method"] for r in gh.requests if r["path"].endswith("/pulls")].count(
            "POST") == 1
    # and the end's email went out once, the delivery is no longer owed
    ends = [p for p in (Path(worker_env["TASKBENCH_VAR_DIR"]) / "outbox").glob("*.eml")
            if "Gizmo added." in p.read_text(errors="replace")]
    assert len(ends) == 1
    assert (await task_row(task_id)).delivery_due_at is None
