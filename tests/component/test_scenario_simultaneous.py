"""Simultaneous turns: the actors' model calls run at once, in-process or one Celery task each."""

from __future__ import annotations

import asyncio
import threading
import time
from datetime import timedelta
from typing import Any

import pytest

from app.core.db import session_scope
from app.kinds.scenario.replay import transcript
from app.kinds.scenario.schema import validate
from app.models import WorkerNode, utcnow
from app.run.scenario import distributed
from app.run.scenario.engine import run_scenario
from tests.factories.scenario import (
    THREE,
    CastResponder,
    close_llm_client,
    make_run_context,
    move,
    run_events,
)
from tests.fakes.llm_server import delayed

FOUR = {**THREE, "turns": 1, "turn_order": "simultaneous", "analyst": {"enabled": False},
        "characters": [*THREE["characters"], {"name": "Dee", "role": "cat"}]}


@pytest.fixture(autouse=True)
async def _client(db):
    yield
    await close_llm_client()


def _talking_cast(delays: dict[str, float]) -> tuple[CastResponder, dict[str, float]]:
    """Each actor answers Ann or Bob after its delay; `arrived` records when each call came."""
    cast, arrived = CastResponder(), {}
    for name, delay in delays.items():
        def plan(turn: int, _req: dict[str, Any], name: str = name, delay: float = delay) -> Any:
            arrived[name] = time.monotonic()
            target = "Bob" if name == "Ann" else "Ann"
            return delayed(delay, move(target, f"{name} speaks in turn {turn}", "support", 0.5))
        cast.plans[name] = plan
    return cast, arrived


async def test_simultaneous_turn_asks_the_actors_concurrently(llm):
    # given: four actors, each answering after about half a second, the first one slowest
    delays = {"Ann": 0.65, "Bob": 0.55, "Cy": 0.45, "Dee": 0.35}  # 2.0 s one after another
    cast, arrived = _talking_cast(delays)
    llm.responder = cast
    ctx = await make_run_context({"scenario": "three", "definition": FOUR, "seed": 1})

    # when
    await run_scenario(ctx)
    took = time.monotonic() - min(arrived.values())

    # then: the calls overlapped, so from the first actor's call to the end of the run took
    # about the slowest call, not the sum of them all
    assert max(arrived.values()) - min(arrived.values()) < 0.3
    assert took < 1.2, f"the actors' part of the turn took {took:.2f}s"
    # every actor saw the same state: Dee was not told what Ann said in this turn
    dee = next(r for r in llm.requests if r["messages"][0]["content"].startswith("You play Dee"))
    assert "Ann speaks" not in dee["messages"][1]["content"]
    assert "Everyone moves at the same time" in dee["messages"][1]["content"]
    # moves are applied in cast order whatever the finishing order (Dee's call ended first)
    events = await run_events(ctx.task_id)
    assert [e["actor"] for e in transcript(events) if e["type"] == "interaction"] == [
        "Ann", "Bob", "Cy", "Dee"]
    ties = [e["data"]["last_interaction"]["by"] for e in events if e["type"] == "relationship"]
    assert ties == ["Ann", "Bob", "Cy", "Dee"]
    usage = [e for e in events if e["type"] == "llm_call" and e["data"]["role"] == "actor"]
    assert len(usage) == 4 and ctx.spent.steps == 5  # each call budget-checked and recorded


async def test_distributed_requires_simultaneous_turns():
    _scenario, problems = validate({**THREE, "distributed": True})
    assert [p["loc"] for p in problems] == [["distributed"]]
    scenario, problems = validate({**FOUR, "distributed": True})
    assert scenario is not None and not problems


async def test_distributed_turn_takes_moves_from_actor_tasks(llm, monkeypatch):
    # given: a live worker registered, whose "broker" runs act_turn here on the loop; Cy's
    # messages are lost, so Cy's move is late and the run computes it itself
    cast, _arrived = _talking_cast({"Ann": 0, "Bob": 0, "Cy": 0, "Dee": 0})
    llm.responder = cast
    async with session_scope() as session:
        # its heartbeat stays fresh for the whole run, however slow this machine is today
        session.add(WorkerNode(id="elsewhere:1", hostname="elsewhere", pid=1,
                               heartbeat_at=utcnow() + timedelta(hours=1)))
    loop, sent, pending = asyncio.get_running_loop(), [], []

    def send_task(name: str, args: list[Any], queue: str, *, expires: float | None) -> None:
        assert threading.current_thread() is not threading.main_thread()  # never blocks the loop
        sent.append((name, *args, queue, expires))
        if args[2] != "Cy":
            loop.call_soon_threadsafe(lambda: pending.append(
                asyncio.ensure_future(distributed.act_turn(*args))))  # type: ignore[arg-type]

    monkeypatch.setattr(distributed, "send_task", send_task)
    definition = {**FOUR, "turns": 2, "distributed": True, "actor_task_timeout_s": 1}
    ctx = await make_run_context({"scenario": "three", "definition": definition, "seed": 1})

    # when
    await run_scenario(ctx)
    await asyncio.gather(*pending)

    # then
    assert [s[:4] for s in sent] == [("act_scenario_turn", ctx.task_id, t, n)
                                     for t in (1, 2) for n in ("Ann", "Bob", "Cy", "Dee")]
    assert {(s[4], s[5]) for s in sent} == {("taskbench", 1.0)}
    events = await run_events(ctx.task_id)
    by = {(e["turn"], e["actor"]): e["computed_by"] for e in transcript(events)
          if e["type"] == "interaction"}
    assert by == {(t, n): "runner" if n == "Cy" else "worker"
                  for t in (1, 2) for n in ("Ann", "Bob", "Cy", "Dee")}
    late = [e["data"] for e in events if e["type"] == "actor_tasks_late"]
    assert [(d["turn"], d["actors"]) for d in late] == [(1, ["Cy"]), (2, ["Cy"])]
    moves = [e["data"] for e in events if e["type"] == "actor_move"]
    assert len(moves) == 6 and all(m["computed_by"] == "worker" for m in moves)
    # turn 2's moves were computed from the log after turn 1: the ties Ann had by then
    ann_2 = [r for r in llm.requests if r["messages"][0]["content"].startswith("You play Ann")
             and "Turn 2 of" in r["messages"][1]["content"]]
    assert ann_2 and "Bob speaks in turn 1" in ann_2[0]["messages"][1]["content"]
    assert ctx.spent.steps == 2 + 8  # the workers' calls count against the run's budget
