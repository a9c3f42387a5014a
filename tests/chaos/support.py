"""Helpers of the chaos tests: submit, wait, read events, find a task's workspace."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any

from tests.integration.workers import task_row

ENDED = ("completed", "failed", "cancelled")


async def submit(client: Any, **body: Any) -> int:
    resp = await client.post("/tasks", json={"title": "t", "complexity": 2, **body})
    assert resp.status_code == 201, resp.text
    return int(resp.json()["id"])


async def ended(task_id: int) -> Any:
    task = await task_row(task_id)
    return task if task.status in ENDED else None


async def events(client: Any, task_id: int) -> list[dict[str, Any]]:
    resp = await client.get(f"/tasks/{task_id}/events", params={"limit": 1000})
    assert resp.status_code == 200, resp.text
    return list(resp.json()["data"])


def tool_events(all_events: list[dict[str, Any]], tool: str) -> list[dict[str, Any]]:
    return [e for e in all_events if e["type"] == "tool_call" and e["data"]["tool"] == tool]


async def workspace_of(task_id: int) -> Path | None:
    task = await task_row(task_id)
    return Path(task.workspace) if task.workspace else None


def tool_results(request: dict[str, Any]) -> list[str]:
    return [str(m.get("content")) for m in request["messages"] if m["role"] == "tool"]


class Clock:
    """Seconds since it was made."""

    def __init__(self) -> None:
        self.start = time.monotonic()

    def __call__(self) -> float:
        return time.monotonic() - self.start
