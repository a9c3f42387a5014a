"""A simultaneous turn spread over workers: one `act_scenario_turn` Celery task per actor.

    runner (coordinator)                              worker (any, per actor)
    ├── narration committed                           act_turn(task_id, turn, actor)
    ├── moves_from_workers ── send × N ─────────────► ├── the state from the event log
    │     polls the log for `actor_move` events       ├── actor_move(): the engine's own code,
    │     (never waits on a task result)              │   budget-checked by its ctx.chat
    │     ◄──────────────────────────────────────────  └── `actor_move` event {move, basis, …}
    ├── late or failed actors: asked here, concurrently
    └── every move applied in a fixed order (turn.py)

`basis` is the seq of the turn's `scenario_turn` start event the move was computed from: a move
from an earlier attempt of the turn (a crashed coordinator, a redelivered message) has another
basis and is ignored. The coordinator takes the first move per actor.
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import time
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import func
from sqlmodel import col, select

from app.core.config import get_settings
from app.core.db import session_factory
from app.kinds.scenario import replay
from app.kinds.scenario.replies import ActorMove
from app.kinds.scenario.schema import Scenario
from app.models import Agent, Task, TaskEvent, WorkerNode, utcnow
from app.run.budget import Limits, Spent
from app.run.context import RunContext
from app.run.errors import RunStopped
from app.run.llm import LLMError
from app.run.scenario.turn import Moves, Run, actor_move, inbox_for
from app.sandbox.workspace import Workspace
from app.tasks.enqueue import DEFAULT_QUEUE, queue_for_agent, send_task
from app.tasks.events import list_events

log = logging.getLogger(__name__)
ACTOR_TASK = "act_scenario_turn"
MOVE_EVENT = "actor_move"
POLL_FIRST_S, POLL_MAX_S = 0.05, 0.5
ENDED = ("completed", "failed", "cancelled")


# -- the coordinator ---------------------------------------------------------------------------

async def moves_from_workers(run: Run, turn: int, order: list[str]) -> Moves:
    """The moves workers computed for this turn; {} when no live worker serves the task's
    queue. Actors whose move is late or failed are missing: the caller asks them itself."""
    ctx = run.ctx
    queue = await queue_with_workers(ctx.agent.name, ctx.settings.worker_heartbeat_s)
    if queue is None:
        return {}
    timeout = float(run.scenario.actor_task_timeout_s)
    basis, mark = await _turn_marks(ctx.task_id)
    try:
        for name in order:
            await asyncio.to_thread(send_task, ACTOR_TASK, [ctx.task_id, turn, name], queue,
                                    expires=timeout)
    except Exception as exc:  # noqa: BLE001 - the broker is down: play the turn here instead
        log.warning("could not send the actors' turns of task %s", ctx.task_id, exc_info=True)
        await ctx.emit("actor_tasks_unsent", {"turn": turn, "error": type(exc).__name__})
        return {}
    found = await _collect(ctx.task_id, turn, basis, mark, set(order),
                           time.monotonic() + timeout)
    moves: Moves = {}
    for name, data in found.items():
        if data.get("error"):
            continue
        move = ActorMove.model_validate(data["move"]) if data.get("move") else None
        moves[name] = (move, {"computed_by": "worker", "worker": data.get("worker")})
    late = [n for n in order if n not in found]
    if late:
        await ctx.emit("actor_tasks_late", {"turn": turn, "actors": late, "timeout_s": timeout})
    await _refresh_spent(ctx)
    return moves


async def queue_with_workers(agent: str, heartbeat_s: float) -> str | None:
    """The queue a live worker serves for `agent` (its own, else the shared one), or None."""
    alive_after = utcnow() - timedelta(seconds=heartbeat_s * 3)
    async with session_factory()() as session:
        rows = (await session.exec(
            select(WorkerNode).where(col(WorkerNode.heartbeat_at) > alive_after))).all()
    if any(agent in (row.agents or []) for row in rows):
        return queue_for_agent(agent)
    if any(not row.agents for row in rows):
        return DEFAULT_QUEUE
    return None


async def _turn_marks(task_id: int) -> tuple[int, int]:
    """(seq of the running turn's start event, the log's last seq): what a move must cite,
    and where to start reading for it."""
    async with session_factory()() as session:
        basis = (await session.exec(
            select(func.max(TaskEvent.seq)).where(TaskEvent.task_id == task_id,
                                                  TaskEvent.type == "scenario_turn"))).one()
        task = await session.get(Task, task_id)
    assert task is not None and basis is not None
    return int(basis), task.last_seq


async def _collect(task_id: int, turn: int, basis: int, after: int, wanted: set[str],
                   deadline: float) -> dict[str, dict[str, Any]]:
    """Poll the log for the actors' `actor_move` events until all are in or `deadline`
    (a time.monotonic() value) has passed."""
    found: dict[str, dict[str, Any]] = {}
    pause = POLL_FIRST_S
    while True:
        async with session_factory()() as session:
            page = await list_events(session, task_id, after=after, types=[MOVE_EVENT])
        for ev in page:
            after = max(after, ev.seq)
            data = ev.data or {}
            actor = data.get("actor")
            if (data.get("turn") == turn and data.get("basis") == basis and actor in wanted
                    and actor not in found):
                found[actor] = data
        if len(found) == len(wanted) or time.monotonic() >= deadline:
            return found
        await asyncio.sleep(min(pause, max(deadline - time.monotonic(), 0.0)))
        pause = min(pause * 1.5, POLL_MAX_S)


async def _refresh_spent(ctx: Any) -> None:
    """Take the workers' model calls into this run's budget view (they add to the task row)."""
    async with session_factory()() as session:
        task = await session.get(Task, ctx.task_id)
    if task is not None:
        ctx.spent = Spent(task.steps, task.prompt_tokens + task.completion_tokens, task.cost_usd)


# -- the worker --------------------------------------------------------------------------------

async def act_turn(task_id: int, turn: int, actor: str) -> str:
    """Compute `actor`'s move of `turn` from the task's log and store it as an event."""
    async with session_factory()() as session:
        task = await session.get(Task, task_id)
        agent = await session.get(Agent, task.agent_id) if task and task.agent_id else None
        events = replay.effective(await replay.load_events(session, task_id))
    if task is None or agent is None or task.status in ENDED:
        return "skipped: the task is not running"
    basis = _open_turn(events, turn)
    if basis is None:
        return "skipped: the turn is not open"
    if any(e["type"] == MOVE_EVENT and e["data"].get("basis") == basis
           and e["data"].get("actor") == actor for e in events):
        return "skipped: already computed"  # a redelivered message
    ctx = _context(task, agent)
    start = replay.started(events)
    run = Run(ctx=ctx, scenario=Scenario.model_validate(start["scenario"]),
              seed=int(start["seed"]), state=replay.state_at(events))
    if actor not in run.scenario.cast:
        return "skipped: not in the cast"
    turn_events = [e for e in events if e["seq"] > basis]
    scene = next((e["data"].get("scene", "") for e in turn_events if e["type"] == "narration"), "")
    inbox = [e["data"] for e in turn_events if e["type"] == "user_message"]
    data: dict[str, Any] = {"turn": turn, "actor": actor, "basis": basis, "computed_by": "worker",
                            "worker": f"{socket.gethostname()}:{os.getpid()}"}
    try:
        move = await actor_move(run, actor, turn, scene=scene, inbox=inbox_for(inbox, actor))
        data["move"] = move.model_dump() if move is not None else None
    except (LLMError, RunStopped) as exc:
        # The coordinator asks this actor itself, and meets (and records) the error properly.
        data["error"] = f"{type(exc).__name__}: {exc}"[:2000]
    await ctx.emit(MOVE_EVENT, data)
    return "error" if "error" in data else "computed"


def _open_turn(events: list[replay.Event], turn: int) -> int | None:
    """The seq of `turn`'s start event when that turn is being played now, else None."""
    basis = None
    for ev in events:
        data = ev["data"]
        if ev["type"] == "scenario_turn" and data.get("turn") == turn:
            basis = ev["seq"] if data.get("phase") == "start" else None
        elif ev["type"] == "scenario_finished":
            basis = None
    return basis


def _context(task: Task, agent: Agent) -> RunContext:
    """A RunContext for one actor's move: the task's budget so far, no lease (the coordinator
    holds it), the workspace the run already made."""
    settings = get_settings()
    workspace = (Workspace(Path(task.workspace)) if task.workspace
                 else Workspace.for_task(settings.workspaces_dir, agent.name, task.id or 0))
    elapsed = (utcnow() - task.started_at).total_seconds() if task.started_at else 0.0
    return RunContext(
        task=task, agent=agent, workspace=workspace, settings=settings,
        limits=Limits.resolve(task.budget or {}, settings),
        worker_id=f"{socket.gethostname()}:{os.getpid()}",
        spent=Spent(task.steps, task.prompt_tokens + task.completion_tokens, task.cost_usd),
        elapsed_before_s=max(0.0, elapsed))
