"""What the director's page stands on (issue 16): validating a run body without starting it
(the same problems, named the same way, as the start's 422), and pausing and resuming a run."""

from __future__ import annotations

import asyncio
import threading
from datetime import timedelta
from typing import Any

import pytest
from sqlalchemy import update
from sqlmodel import col, select

from app.core.db import session_scope
from app.models import Task, TaskEvent, utcnow
from tests.factories import auth, event_types, new_user_key, run_enqueued
from tests.factories.scenario import (
    HARBOUR,
    CastResponder,
    make_ecosystem,
    move,
    run_events,
    start_in_ecosystem,
)


async def test_a_valid_body_is_checked_without_starting_a_run(app_client, enqueued):
    eco = await make_ecosystem(app_client, ["Ann", "Bob"])
    body = {"definition": HARBOUR, "ecosystem": eco["id"]}
    resp = await app_client.post("/scenarios/runs/validate", json=body)
    assert resp.status_code == 200, resp.text
    check = resp.json()
    assert (check["valid"], check["problems"], check["turns"]) == (True, [], 2)
    assert check["characters"] == ["Ann", "Bob"] and check["complexity"] == 1
    assert check["budget"]["max_steps"] >= 6
    assert (await app_client.get("/tasks")).json()["count"] == 0 and not enqueued


BAD = [
    # (what is wrong, the body, where the problem is named)
    ("a cast member you do not have",
     {"definition": {**HARBOUR, "cast": [{"character": "Ann"}, {"character": "Zed"}]}},
     ["body", "definition", "cast", 1, "character"]),
    ("the same character cast twice",
     {"definition": {**HARBOUR, "cast": [{"character": "Ann"}, {"character": "Ann"}]}},
     ["body", "definition", "cast", 1, "character"]),
    ("turns out of range", {"definition": {**HARBOUR, "turns": 0}},
     ["body", "definition", "turns"]),
    ("no title", {"definition": {k: v for k, v in HARBOUR.items() if k != "title"}},
     ["body", "definition", "title"]),
    ("a tie to nobody", {"definition": {**HARBOUR, "relationships": [
        {"between": ["Ann", "Zed"], "strength": 0.2}]}},
     ["body", "definition", "relationships", 0, "between", 1]),
    ("an override out of range", {"definition": HARBOUR, "overrides": {"turns": 1000}},
     ["body", "overrides", "turns"]),
    ("someone else's ecosystem", {"definition": HARBOUR, "ecosystem": 999},
     ["body", "ecosystem"]),
]


@pytest.mark.parametrize(("case", "body", "loc"), BAD, ids=[b[0] for b in BAD])
async def test_validation_names_the_problem_as_the_start_would(app_client, case, body, loc):
    # given the user's Ann and Bob
    await make_ecosystem(app_client, ["Ann", "Bob"])
    # when the body is validated, and when a run is started with it
    check = (await app_client.post("/scenarios/runs/validate", json=body)).json()
    started = await app_client.post("/scenarios/runs", json=body)
    # then both name the same problems the same way
    assert check["valid"] is False
    assert loc in [p["loc"] for p in check["problems"]], check["problems"]
    assert started.status_code == 422 and started.json()["detail"] == check["problems"]
    assert (await app_client.get("/tasks")).json()["count"] == 0


async def test_a_body_of_the_wrong_shape_is_a_422_naming_the_field(app_client):
    resp = await app_client.post("/scenarios/runs/validate", json={"definition": [], "seed": -1})
    assert resp.status_code == 422
    assert {tuple(p["loc"]) for p in resp.json()["detail"]} == {("body", "definition"),
                                                                ("body", "seed")}


# -- pause and resume --------------------------------------------------------------------------

class Gate:
    """Holds one actor's call of one turn until the test lets it go."""

    def __init__(self, actor: str, turn: int) -> None:
        self.actor, self.turn = actor, turn
        self.entered, self.released = threading.Event(), threading.Event()

    def hold(self, name: str, turn: int) -> None:
        if (name, turn) == (self.actor, self.turn) and not self.released.is_set():
            self.entered.set()
            self.released.wait(30)


async def _task_row(task_id: int) -> Task:
    async with session_scope() as session:
        task = await session.get(Task, task_id)
    assert task is not None
    return task


@pytest.mark.parametrize("db_url", ["sqlite", "postgres"], indirect=True)
async def test_a_run_paused_mid_turn_goes_on_from_its_last_turn(app_client, enqueued, llm):
    # given a three-turn run of Ann and Bob in an ecosystem, held in Bob's move of turn 2
    eco = await make_ecosystem(app_client, ["Ann", "Bob"])
    gate = Gate("Bob", 2)
    cast = CastResponder()

    def plan(name: str, other: str) -> Any:
        def reply(turn: int, _request: dict[str, Any]) -> Any:
            gate.hold(name, turn)
            return move(other, f"{name} at turn {turn}", "chat", 0.5)
        return reply

    cast.plans["Ann"], cast.plans["Bob"] = plan("Ann", "Bob"), plan("Bob", "Ann")
    llm.responder = cast
    run = await start_in_ecosystem(app_client, eco["id"], {**HARBOUR, "turns": 3})
    worker = asyncio.ensure_future(run_enqueued(enqueued))
    assert await asyncio.to_thread(gate.entered.wait, 60)

    # when it is paused there
    paused = await app_client.post(f"/tasks/{run}/pause")

    # then the worker stops the run, frees the slot and lets the lease go
    assert paused.status_code == 200, paused.text
    assert paused.json()["status"] == "paused"
    assert await asyncio.wait_for(worker, 60) == ["paused"]
    gate.released.set()
    row = await _task_row(run)
    assert (row.status, row.lease_owner, row.slot_held) == ("paused", None, False)
    events = await run_events(run)
    assert events[-1]["type"] == "stopped" and events[-1]["data"]["reason"] == "paused"
    assert (await app_client.post(f"/tasks/{run}/pause")).status_code == 409
    # and the observatory shows the paused run's ties as the ecosystem's live ones
    view = (await app_client.get(f"/ecosystems/{eco['id']}/observatory")).json()
    assert view["live_run"] == run and [(e["a"], e["b"]) for e in view["graph"]["edges"]] == [
        ("Ann", "Bob")]
    assert (await app_client.get(f"/ecosystems/{eco['id']}")).json()["relationships"] == []

    # when it is resumed (having been paused an hour)
    async with session_scope() as session:
        await session.execute(update(TaskEvent).where(
            col(TaskEvent.task_id) == run, col(TaskEvent.seq) == paused_seq(events))
            .values(created_at=utcnow() - timedelta(hours=1)))
    started_before = row.started_at
    resumed = await app_client.post(f"/tasks/{run}/resume")
    assert resumed.status_code == 200, resumed.text
    assert resumed.json()["status"] in ("pending", "assigned")
    await run_enqueued(enqueued)

    # then it completes, every turn played once, turn 2 again from its start
    task = (await app_client.get(f"/tasks/{run}")).json()
    assert task["status"] == "completed", task
    transcript = (await app_client.get(f"/scenarios/runs/{run}/transcript")).json()
    said = [e["content"] for e in transcript["entries"] if e["type"] == "interaction"]
    assert said == [f"{n} at turn {t}" for t in (1, 2, 3) for n in ("Ann", "Bob")]
    events = await run_events(run)
    resumed_at = next(e["data"] for e in events if e["type"] == "scenario_resumed")
    assert resumed_at == {"after_turn": 1}
    statuses = [e["data"]["status"] for e in events if e["type"] == "status"]
    assert statuses[-3:] == ["pending", "assigned", "completed"] and "paused" in statuses
    # and the hour it spent paused did not count against its time budget
    assert started_before is not None
    shifted = (await _task_row(run)).started_at
    assert shifted is not None and shifted - started_before >= timedelta(minutes=59)
    assert (await app_client.post(f"/tasks/{run}/resume")).status_code == 409
    assert (await app_client.post(f"/tasks/{run}/pause")).status_code == 409


def paused_seq(events: list[dict[str, Any]]) -> int:
    return next(e["seq"] for e in reversed(events)
                if e["type"] == "status" and e["data"]["status"] == "paused")


async def test_a_pending_run_pauses_and_others_cannot_touch_it(app_client, enqueued, llm):
    # given a run nobody has picked up yet
    cast = CastResponder()
    cast.plans["Ann"] = [move("Bob", "Hello, Bob.")]
    llm.responder = cast
    eco = await make_ecosystem(app_client, ["Ann", "Bob"])
    run = await start_in_ecosystem(app_client, eco["id"])
    other = auth(await new_user_key("someone@example.com"))
    # then another user cannot pause or resume it
    assert (await app_client.post(f"/tasks/{run}/pause", headers=other)).status_code == 404
    # when its owner pauses it, the delivery already sent finds nothing to run
    assert (await app_client.post(f"/tasks/{run}/pause")).json()["status"] == "paused"
    assert await run_enqueued(enqueued) == ["skipped"]
    assert (await app_client.post(f"/tasks/{run}/resume", headers=other)).status_code == 404
    # and when resumed it runs to the end
    assert (await app_client.post(f"/tasks/{run}/resume")).status_code == 200
    await run_enqueued(enqueued)
    task = (await app_client.get(f"/tasks/{run}")).json()
    assert task["status"] == "completed", (task["error"], task["summary"])
    async with session_scope() as session:
        rows = (await session.exec(select(TaskEvent).where(TaskEvent.task_id == run))).all()
    assert "stopped" not in event_types([{"type": r.type} for r in rows])
