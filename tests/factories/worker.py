"""The worker side in-process: what the API enqueued, run as a worker would run it."""

from __future__ import annotations

import uuid
from typing import Any


class Enqueued(list):  # type: ignore[type-arg]
    """(task id, queue) of runs the API enqueued; `deliveries` the deliver_task messages;
    `headers` the message headers (trace context) by task id (the broker is bypassed in
    in-process tests)."""

    def __init__(self) -> None:
        super().__init__()
        self.deliveries: list[int] = []
        self.headers: dict[int, dict[str, str]] = {}

    def send(self, task_id: int, queue: str, name: str = "run_task",
             headers: dict[str, str] | None = None) -> None:
        if headers:
            self.headers[task_id] = headers
        if name == "deliver_task":
            self.deliveries.append(task_id)
        else:
            self.append((task_id, queue))


async def run_enqueued(enqueued: Enqueued) -> list[str]:
    """Run every enqueued task in this process, as a worker would, until none are left."""
    from app.core.tracing import consumer_span
    from app.run.runner import deliver_task, run_task

    results = []
    headers = getattr(enqueued, "headers", {})
    while enqueued or getattr(enqueued, "deliveries", None):
        while enqueued:
            task_id, _queue = enqueued.pop(0)
            # continued from the message's trace context, as worker/tasks.py does
            with consumer_span("run_task", headers.get(task_id), {"taskbench.task_id": task_id}):
                results.append(await run_task(task_id, owner=f"test-{uuid.uuid4().hex[:6]}"))
        while getattr(enqueued, "deliveries", None):
            task_id = enqueued.deliveries.pop(0)
            with consumer_span("deliver_task", headers.get(task_id),
                               {"taskbench.task_id": task_id}):
                await deliver_task(task_id)
    return results


async def submit_and_run(client: Any, enqueued: Enqueued, **body: Any) -> dict[str, Any]:
    """Submit a task (title "t", complexity 2, plus `body`), run it here as a worker would,
    and return the task as the API shows it afterwards."""
    resp = await client.post("/tasks", json={"title": "t", "complexity": 2, **body})
    assert resp.status_code == 201, resp.text
    await run_enqueued(enqueued)
    return (await client.get(f"/tasks/{resp.json()['id']}")).json()
