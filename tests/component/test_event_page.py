"""GET /tasks/{id}/events: the page is the public schema's JSON, built without an object per
field of every event (issue 15: pages of a 10,000-event log in ≤ 50 ms, no collector spikes)."""

from __future__ import annotations

import gc
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

import pytest

from app.core.db import session_scope
from app.models import EventPublic, EventsPublic, Task
from app.tasks.events import append_events, list_events

pytestmark = pytest.mark.parametrize("db_url", ["sqlite", "postgres"], indirect=True)
ODD = {"text": "é ✓ \u2028 \"quoted\" </script>", "n": 2.5, "big": 2**53 + 1, "none": None,
       "nested": {"list": [1, "two", {"three": [True, False]}]}, "empty": {}}


async def _task_with_events(app_client, events: int) -> int:
    task_id = (await app_client.post("/tasks", json={"title": "t", "complexity": 1})).json()["id"]
    async with session_scope() as session:
        for start in range(0, events, 250):
            await append_events(session, task_id, [
                ("tool_result", {**ODD, "i": i, "output": "x" * 200})
                for i in range(start, min(events, start + 250))])
    return task_id


@contextmanager
def young_collections() -> Iterator[list[int]]:
    """How many times the collector's youngest generation filled (every 700 new containers)."""
    passes: list[int] = []

    def count(phase: str, info: dict[str, Any]) -> None:
        if phase == "start" and info["generation"] == 0:
            passes.append(1)

    gc.collect()
    gc.callbacks.append(count)
    try:
        yield passes
    finally:
        gc.callbacks.remove(count)


async def test_a_page_is_the_public_schema_of_the_events(app_client, enqueued):
    # given a task with its own events and 20 more of every JSON shape
    task_id = await _task_with_events(app_client, 20)
    # when a page in the middle is read
    resp = await app_client.get(f"/tasks/{task_id}/events", params={"after": 3, "limit": 5})
    # then it is exactly what the public schema makes of those rows
    async with session_scope() as session:
        rows = await list_events(session, task_id, after=3, limit=5)
        last_seq = (await session.get(Task, task_id)).last_seq  # type: ignore[union-attr]
    expected = EventsPublic(data=[EventPublic.model_validate(r, from_attributes=True)
                                  for r in rows], count=5, last_seq=last_seq)
    assert resp.status_code == 200
    assert resp.headers["content-type"] == "application/json"
    assert resp.json() == expected.model_dump(mode="json")
    assert [e["seq"] for e in resp.json()["data"]] == [4, 5, 6, 7, 8]


async def test_reading_a_long_log_page_by_page_gives_every_event_once(app_client, enqueued):
    # given a task with 1,200 events
    task_id = await _task_with_events(app_client, 1200)
    # when it is read through with the default page size
    seqs, after = [], 0
    while True:
        page = (await app_client.get(f"/tasks/{task_id}/events", params={"after": after})).json()
        if not page["data"]:
            break
        seqs += [e["seq"] for e in page["data"]]
        after = page["data"][-1]["seq"]
    # then every event came once, in order, and each page said where the log ends
    assert seqs == list(range(1, page["last_seq"] + 1))
    assert page["last_seq"] >= 1200


async def test_a_500_event_page_leaves_the_collector_little_to_do(app_client, enqueued):
    # given a task with 500 events, and one page read already (caches warm)
    task_id = await _task_with_events(app_client, 500)
    await app_client.get(f"/tasks/{task_id}/events")
    # when the 500-event page is read again
    with young_collections() as passes:
        resp = await app_client.get(f"/tasks/{task_id}/events")
    # then it made half the objects the collector tracks: as ORM rows, validated models and
    # the response model's copies it filled the youngest generation 14-15 times a page (now 7:
    # the rows' own JSON data, which every reader of the log must parse)
    assert resp.json()["count"] == 500
    assert len(passes) <= 10, len(passes)
