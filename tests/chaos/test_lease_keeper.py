"""The lease is kept from the moment it is taken: a workspace (or clone) slower than the lease
used to let a second worker take the task over while the first was still preparing it."""

from __future__ import annotations

import asyncio
import time
from typing import Any

import pytest

from app.core.config import get_settings
from tests.fakes.llm_server import ScriptedLLM, finish


@pytest.mark.parametrize("db_url", ["sqlite", "postgres"], indirect=True)
async def test_a_slow_preparation_keeps_the_lease(
    app_client, enqueued, llm: ScriptedLLM, monkeypatch: pytest.MonkeyPatch
):
    from app.run.runner import run_task
    from app.sandbox.workspace import Workspace

    # given a task whose workspace takes longer to make than the lease lasts
    llm.responder = lambda req: finish("done")
    lease_s = get_settings().lease_seconds
    create = Workspace.create

    def slow_create(self: Any, **kw: Any) -> None:
        time.sleep(lease_s + 1.5)  # in a thread, as a slow disk or clone would be
        create(self, **kw)

    monkeypatch.setattr(Workspace, "create", slow_create)
    resp = await app_client.post("/tasks", json={"title": "t", "complexity": 2})
    task_id = int(resp.json()["id"])
    enqueued.clear()
    # when a second delivery arrives after the lease would have run out
    first = asyncio.ensure_future(run_task(task_id, owner="first-worker"))
    await asyncio.sleep(lease_s + 0.5)
    second = await run_task(task_id, owner="second-worker")
    # then the first worker still holds it, and runs it to its end alone
    assert second == "skipped"
    assert await first == "ran"
    task = (await app_client.get(f"/tasks/{task_id}")).json()
    assert task["status"] == "completed" and task["attempts"] == 1
