"""Issue 17 #2 with a real worker: one task's fork bomb beside other tasks' commands.

The bomb's processes run as its own uid, in its own cgroup: the other tasks' commands (in the
same worker, at the same time) all run, and the worker keeps serving tasks afterwards."""

from __future__ import annotations

import os
import shlex
import shutil

import pytest

from tests.fakes.llm_server import ScriptedLLM, finish, tool_call
from tests.integration.workers import WorkerProcess, task_row, wait_for, workers_alive

pytestmark = [pytest.mark.slow,
              pytest.mark.skipif(not shutil.which("bwrap"), reason="bubblewrap not installed"),
              pytest.mark.skipif(os.geteuid() != 0, reason="per-task uids need a root worker")]
BOMB = ("import os,time\np=os.getpid()\nn=0\nfor _ in range(300):\n    try:\n        os.fork()\n"
        "    except OSError:\n        n+=1\n        time.sleep(0.01)\ntime.sleep(5)\n"
        "if os.getpid()==p: print('forks refused', n)\n")


def _respond(req: dict) -> dict:
    text = " ".join(str(m.get("content") or "") for m in req["messages"])
    if any(m["role"] == "tool" for m in req["messages"]):
        return finish("done")
    if "BOMB-TASK" in text:
        return tool_call("run_command", command=f"python3 -c {shlex.quote(BOMB)}", timeout=12)
    # the others wait until the bomb holds every process it can get
    return {**tool_call("run_command", command="python3 -c 'print(6*7)'"), "delay": 2.0}


async def _done(task_id: int):  # type: ignore[no-untyped-def]
    task = await task_row(task_id)
    return task if task.status in ("completed", "failed", "cancelled") else None


async def test_fork_bomb_task_beside_others_in_one_worker(api, worker_env, llm: ScriptedLLM,
                                                           tmp_path):
    llm.responder = _respond
    worker = WorkerProcess(worker_env, tmp_path / "worker.log", concurrency=2)
    try:
        await wait_for(workers_alive, timeout=60)
        bomb = await _submit(api, "BOMB-TASK")
        others = [await _submit(api, f"normal task {i}") for i in range(3)]
        tasks = {t: await wait_for(lambda t=t: _done(t), timeout=120) for t in [bomb, *others]}
        after = await _submit(api, "after the bomb")
        tasks[after] = await wait_for(lambda: _done(after), timeout=60)
    finally:
        worker.stop()
    # then every task completed and every normal command really ran in the jail
    assert all(t.status == "completed" for t in tasks.values()), \
        {k: (t.status, t.error) for k, t in tasks.items()}
    bombed = await _commands(api, bomb)
    assert "forks refused" in bombed[0]["output"], bombed
    assert int(bombed[0]["output"].split("forks refused")[1].split()[0]) > 0
    for task_id in [*others, after]:
        calls = await _commands(api, task_id)
        assert calls and all(c["data"]["exit_code"] == 0 and "42" in c["output"]
                             and c["data"]["sandbox"] == "bwrap" for c in calls), calls


async def _submit(client, title: str) -> int:  # type: ignore[no-untyped-def]
    resp = await client.post("/tasks", json={"title": title, "complexity": 2})
    assert resp.status_code == 201, resp.text
    return int(resp.json()["id"])


async def _commands(client, task_id: int) -> list[dict]:  # type: ignore[no-untyped-def]
    resp = await client.get(f"/tasks/{task_id}/events", params={"limit": 1000})
    return [e["data"] for e in resp.json()["data"]
            if e["type"] == "tool_call" and e["data"]["tool"] == "run_command"]
