"""Run one task inside a worker: take the lease, prepare the workspace, run its kind, end it.

The lease is the guard against double runs: a task is run only by the worker holding an unexpired
lease, renewed every half second by a keeper that also notices cancellation. A redelivered task
resumes from its checkpoint; one delivered more than `max_deliveries` times fails instead.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import socket
import uuid
from collections.abc import Awaitable, Callable
from datetime import timedelta
from pathlib import Path
from typing import Any

from sqlalchemy import func, update
from sqlmodel import col, select

from app import integrations as deliver
from app.core.config import Settings, get_settings
from app.core.db import connection_scope, get_engine, session_scope
from app.core.logging import bind
from app.models import Agent, OutboxMessage, OutboxStatus, Task, TaskStatus, table, utcnow
from app.ops.sweeper import assign_and_enqueue
from app.run.agent.delegation import shared_workspace_of
from app.run.agent.waiting import RunPaused
from app.run.budget import Limits, Spent, TreeBudgetExceeded
from app.run.context import RunContext
from app.run.errors import LeaseLost, RunStopped, TaskCancelled
from app.run.llm import LLMError
from app.sandbox.venv import create_venv
from app.sandbox.workspace import Workspace
from app.tasks.enqueue import enqueue
from app.tasks.events import publish
from app.tasks.lifecycle import TERMINAL_VALUES, close_task

log = logging.getLogger(__name__)
LEASABLE = [s.value for s in (TaskStatus.assigned, TaskStatus.design, TaskStatus.build,
                              TaskStatus.test, TaskStatus.review)]
KEEPER_INTERVAL_S = 0.5
Kind = Callable[[RunContext], Awaitable[str]]


def _kinds() -> dict[str, Kind]:
    from app.run.agent.loop import run_agent

    kinds: dict[str, Kind] = {"agent": run_agent}
    try:
        from app.run.playbook import run_playbook

        kinds["playbook"] = run_playbook
    except ImportError:
        pass
    try:
        from app.run.scenario import run_scenario

        kinds["scenario"] = run_scenario
    except ImportError:
        pass
    return kinds


async def acquire_lease(task_id: int, owner: str, settings: Settings) -> int | None:
    """Take the task's lease if it is free or expired; returns the delivery count."""
    async with session_scope() as session:
        return await _lease(session, task_id, owner, settings)


async def _lease(session: Any, task_id: int, owner: str, settings: Settings) -> int | None:
    now = utcnow()
    result = await session.execute(
        update(Task)
        .where(
            col(Task.id) == task_id,
            col(Task.status).in_(LEASABLE),
            (col(Task.lease_owner).is_(None)) | (col(Task.lease_expires_at) < now),
        )
        .values(lease_owner=owner, attempts=Task.attempts + 1,
                lease_expires_at=now + timedelta(seconds=settings.lease_seconds),
                started_at=func.coalesce(Task.started_at, now))
        .returning(col(Task.attempts))
    )
    attempt: int | None = result.scalar_one_or_none()
    return attempt


async def _start(
    task_id: int, owner: str, settings: Settings
) -> tuple[int | None, RunContext | None]:
    """Take the lease and load what the run needs, in one transaction: (attempt, context).

    No context when the lease is not ours, or when the task was delivered too often."""
    async with session_scope() as session:
        attempt = await _lease(session, task_id, owner, settings)
        if attempt is None or attempt > settings.max_deliveries:
            return attempt, None
        task = await session.get(Task, task_id)
        assert task is not None and task.agent_id is not None
        agent = await session.get(Agent, task.agent_id)
        assert agent is not None
        workspace, borrowed = await _workspace_for(session, task, agent, settings)
        task.workspace = str(workspace.root)
        session.add(task)
    elapsed = (utcnow() - task.started_at).total_seconds() if task.started_at else 0.0
    return attempt, RunContext(
        task=task, agent=agent, workspace=workspace, settings=settings,
        limits=Limits.resolve(task.budget or {}, settings), worker_id=owner,
        spent=Spent(task.steps, task.prompt_tokens + task.completion_tokens, task.cost_usd),
        elapsed_before_s=max(0.0, elapsed), borrowed_workspace=borrowed)


async def end(task_id: int, status: TaskStatus, *, summary: str | None = None,
              error: str | None = None) -> None:
    async with session_scope() as session:
        events = await close_task(session, task_id, status, summary=summary, error=error)
    publish(events)


async def _keep_lease(task_id: int, owner: str, work: asyncio.Task[Any],
                      stop: dict[str, RunStopped], settings: Settings) -> None:
    """Renew the lease; cancel `work` when the task is cancelled or the lease is gone."""
    while not work.done():
        await asyncio.sleep(KEEPER_INTERVAL_S)
        async with connection_scope() as conn:
            result = await conn.execute(
                update(table(Task))
                .where(col(Task.id) == task_id, col(Task.lease_owner) == owner)
                .values(lease_expires_at=utcnow() + timedelta(seconds=settings.lease_seconds))
                .returning(col(Task.status))
            )
            status = result.scalar_one_or_none()
        if status is None:
            stop["reason"] = LeaseLost("another worker holds this task's lease")
        elif status == TaskStatus.cancelled.value:
            stop["reason"] = TaskCancelled("cancelled")
        else:
            continue
        work.cancel()
        return


async def _workspace_for(
    session: Any, task: Task, agent: Agent, settings: Settings
) -> tuple[Workspace, bool]:
    """The task's workspace, and whether it is its parent's (a shared-workspace subtask)."""
    parent_id = shared_workspace_of(task)
    if parent_id is not None:
        parent = await session.get(Task, parent_id)
        if parent is not None and parent.workspace:
            return Workspace(Path(parent.workspace)), True
    # a resumed task may run on another agent; it keeps the workspace it started in
    if task.workspace:
        return Workspace(Path(task.workspace)), False
    return Workspace.for_task(settings.workspaces_dir, agent.name, task.id or 0), False


def _take_uploads(ctx: RunContext) -> None:
    """Move files uploaded before the workspace existed into its input/ folder."""
    staged = ctx.settings.var_dir / "uploads" / str(ctx.task_id)
    if staged.is_dir():
        dest = ctx.workspace.root / "input"
        dest.mkdir(exist_ok=True)
        for item in staged.iterdir():
            shutil.move(str(item), dest / item.name)
        staged.rmdir()


async def _prepare(ctx: RunContext, attempt: int) -> None:
    ctx.workspace.create(title=ctx.task.title, description=ctx.task.description)
    _take_uploads(ctx)
    made_with = await asyncio.to_thread(create_venv, ctx.workspace.venv,
                                        cache_dir=ctx.settings.var_dir / "cache" / "uv")
    # written with the first phase change, before the first model call
    ctx.record("started", {"attempt": attempt, "worker": ctx.worker_id,
                           "workspace": ctx.workspace.relative(ctx.workspace.root),
                           "venv": made_with, "agent": ctx.agent.name})
    await deliver.prepare(ctx.task, ctx.workspace, ctx.settings, ctx.emit)


async def _execute(ctx: RunContext, settings: Settings) -> None:
    """Run the task's kind under the keeper and end the task by how it went."""
    kind = _kinds().get(ctx.task.kind)
    if kind is None:
        await end(ctx.task_id, TaskStatus.failed, error=f"unknown task kind {ctx.task.kind!r}")
        return
    stop: dict[str, RunStopped] = {}
    work = asyncio.ensure_future(kind(ctx))
    keeper = asyncio.ensure_future(_keep_lease(ctx.task_id, ctx.worker_id, work, stop, settings))
    remaining = ctx.limits.timeout_s - ctx.elapsed_before_s
    try:
        summary = await asyncio.wait_for(asyncio.shield(work), timeout=max(remaining, 0.01))
    except TimeoutError:
        work.cancel()
        await end(ctx.task_id, TaskStatus.failed,
                  error=f"time budget exhausted ({ctx.limits.timeout_s}s)")
        return
    except asyncio.CancelledError:
        reason = stop.get("reason")
        if reason is None:
            raise
        log.info("task %s stopped: %s", ctx.task_id, reason)
        if isinstance(reason, TaskCancelled):
            await ctx.emit("stopped", {"reason": "cancelled"})
        return
    except RunPaused:
        return  # waiting for subtasks or an answer; the slot and the lease are given back
    except (RunStopped, LLMError) as exc:
        await end(ctx.task_id, TaskStatus.failed, error=f"{type(exc).__name__}: {exc}")
        if isinstance(exc, TreeBudgetExceeded) and exc.root_id != ctx.task_id:
            await end(exc.root_id, TaskStatus.failed, error=f"{type(exc).__name__}: {exc}")
        return
    finally:
        keeper.cancel()
    await ctx.flush()  # whatever the kind recorded last, before the task is seen as ended
    await end(ctx.task_id, TaskStatus.completed, summary=summary)


async def run_task(task_id: int, owner: str | None = None) -> str:
    """Run or resume `task_id`; returns what happened (for logs and tests)."""
    settings = get_settings()
    owner = owner or f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
    attempt, ctx = await _start(task_id, owner, settings)
    if attempt is None:
        return "skipped"
    try:
        if ctx is None:
            await end(task_id, TaskStatus.failed,
                      error=f"delivered {attempt} times; the task keeps killing its worker")
            return "failed"
        with bind(task_id=task_id, agent=ctx.agent.name):
            await _prepare(ctx, attempt)
            await _execute(ctx, settings)
    except Exception as exc:
        log.exception("task %s crashed", task_id)
        await end(task_id, TaskStatus.failed, error=f"internal error: {type(exc).__name__}")
        return "crashed"
    finally:
        await _deliver_if_ended(task_id)
        await assign_and_enqueue()
    return "ran"


async def _deliver_if_ended(task_id: int) -> None:
    """Hand the deliverables of an ended task to their own worker task, so this run ends when
    its status is set; no message when it has none (lazy report, no email, no GitHub)."""
    try:
        async with get_engine().connect() as conn:  # a read: no write lock
            row = (await conn.execute(
                select(Task.status, Agent.name, Task.notify, Task.github)
                .add_columns(_unsent_mail(task_id))
                .join(Agent, col(Agent.id) == col(Task.agent_id), isouter=True)
                .where(col(Task.id) == task_id)
            )).first()
        if row is None or row[0] not in TERMINAL_VALUES:
            return
        status, agent, notify, github, unsent = row
        if not (get_settings().eager_reports or (notify or {}).get("email") or github or unsent):
            return
        await enqueue([(task_id, agent or "")], name="deliver_task")
    except Exception:  # noqa: BLE001 - the outbox sweep still sends what is owed
        log.exception("could not enqueue deliverables for task %s", task_id)


def _unsent_mail(task_id: int) -> Any:
    """Whether the task has email not yet sent (e.g. a `send_email` whose own flush failed)."""
    return (select(OutboxMessage.id)
            .where(col(OutboxMessage.task_id) == task_id,
                   col(OutboxMessage.status) == OutboxStatus.pending)
            .exists())


async def deliver_task(task_id: int) -> None:
    """Deliverables after the end; their failure is logged, never turned into a task failure."""
    try:
        await deliver.after_end(task_id)
    except Exception:  # noqa: BLE001 - the outbox and the sweep retry what did not go out
        log.exception("deliverables for task %s failed", task_id)
