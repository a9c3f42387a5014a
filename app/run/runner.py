"""Run one task inside a worker: take the lease, prepare the workspace, run its kind, end it.

The lease (app.run.lease) is the guard against double runs; its keeper runs from the moment the
lease is taken. A redelivered task resumes from its checkpoint; one that keeps killing its
worker inside a tool call fails instead (see app.run.lease).
"""

from __future__ import annotations

import asyncio
import logging
import os
import socket
import uuid
from pathlib import Path
from typing import Any

from sqlalchemy import bindparam, exists, update
from sqlmodel import col, select

from app import integrations as deliver
from app.core.config import Settings, get_settings
from app.core.db import RunConnection, get_engine, session_scope
from app.core.logging import bind
from app.core.transient import is_transient, retrying
from app.models import (
    TERMINAL_VALUES,
    Agent,
    OutboxMessage,
    OutboxStatus,
    Task,
    TaskCheckpoint,
    TaskStatus,
    ToolIntent,
    from_row,
    table,
    utcnow,
)
from app.run import lease_postgres, step_changes, steps_postgres
from app.run.agent.delegation import shared_workspace_of
from app.run.agent.waiting import RunPaused
from app.run.budget import Limits, Spent, TreeBudgetExceeded
from app.run.context import RunContext
from app.run.errors import LeaseLost, RunStopped, TaskCancelled, TaskPaused
from app.run.kinds import RUNNERS
from app.run.lease import (
    hand_back,
    keep_lease,
    lease_params,
    let_go,
    take_lease,
    too_often,
)
from app.run.llm import LLMError
from app.run.step_record import StepRecord
from app.sandbox import fs
from app.sandbox.probe import SandboxUnavailable
from app.sandbox.uids import release as release_uid
from app.sandbox.workspace import Workspace, workspaces_root
from app.tasks.enqueue import assign_and_enqueue, enqueue
from app.tasks.events import publish
from app.tasks.lifecycle import Completed, EndedTask, close_task, complete_alone, ends_alone

log = logging.getLogger(__name__)
STOP_GRACE_S = 5.0


async def _start(
    task_id: int, owner: str, settings: Settings, connection: RunConnection
) -> tuple[int | None, RunContext | str | None]:
    """Take the lease and load what the run needs, on the run's `connection`: (attempt,
    context).

    No context when the lease is not ours; why not, when the task was delivered too often.
    Core statements: the lease returns the task's row, and on PostgreSQL its agent's too (one
    statement, atomic on its own, so sent with no BEGIN or COMMIT around it); on SQLite one
    more read gets the agent, in the lease's transaction. A first run's workspace is recorded
    by the lease itself on PostgreSQL (through the driver: app.run.lease_postgres), else
    (SQLite, a subtask) by a statement of its own after it (a lease taken again after a lost
    answer is ours: safe to repeat)."""
    postgres = get_engine().dialect.name == "postgresql"
    conn: Any  # the driver's own connection on PostgreSQL, else SQLAlchemy's
    async with (connection.driver() if postgres else connection.statements()) as conn:
        if postgres:
            task_row, agent_row, resumable = await lease_postgres.lease(
                conn, lease_params(task_id, owner, settings),
                workspaces_root(settings.workspaces_dir))
        else:
            task_row, agent_row, resumable = await _lease_and_agent(conn, task_id, owner,
                                                                    settings)
        if task_row is None:
            return None, None
        attempt = int(task_row["attempts"])
        refusal = too_often(attempt, int(task_row["tool_deaths"]), settings)
        if refusal is not None:
            return attempt, refusal
        task = from_row(Task, task_row)
        assert task.agent_id is not None and agent_row is not None
        agent = from_row(Agent, agent_row)
        workspace, borrowed = await _workspace_for(conn, task, agent, settings, postgres)
        if task.workspace != str(workspace.root):
            task.workspace = str(workspace.root)
            if postgres:
                await conn.execute(lease_postgres.SET_WORKSPACE, task_id, task.workspace)
            else:
                await conn.execute(_SET_WORKSPACE, {"ws_task": task_id,
                                                    "ws_path": task.workspace})
    elapsed = (utcnow() - task.started_at).total_seconds() if task.started_at else 0.0
    return attempt, RunContext(
        task=task, agent=agent, workspace=workspace, settings=settings,
        limits=Limits.resolve(task.budget or {}, settings), worker_id=owner,
        spent=Spent(task.steps, task.prompt_tokens + task.completion_tokens, task.cost_usd),
        elapsed_before_s=max(0.0, elapsed), borrowed_workspace=borrowed, connection=connection,
        fresh=not resumable)


def _resumable(task_id: Any) -> Any:
    """Whether the task has anything to resume from: a checkpoint, or a tool call a dead
    worker left unsettled in the journal. Most runs are first runs with neither, and then the
    run reads neither (RunContext.fresh)."""
    checkpoint, intent = table(TaskCheckpoint), table(ToolIntent)
    return (exists().where(checkpoint.c.task_id == task_id)
            | exists().where(intent.c.task_id == task_id, intent.c.settled.is_(False))
            ).label("resumable")


_SET_WORKSPACE = (update(table(Task)).where(col(Task.id) == bindparam("ws_task"))
                  .values(workspace=bindparam("ws_path")))
# SQLite: the agent, and whether there is anything to resume, read in the lease's transaction
# (PostgreSQL: the lease joined with the agent, one statement: app.run.lease_postgres)
_AGENT = (table(Agent).select().where(col(Agent.id) == bindparam("agent_id"))
          .add_columns(_resumable(bindparam("task_id"))))


async def _lease_and_agent(
    conn: Any, task_id: int, owner: str, settings: Settings
) -> tuple[dict[str, Any] | None, dict[str, Any] | None, bool]:
    """SQLite: (the task's row, its agent's row, whether there is anything to resume) once
    the lease is taken; (None, None, True): not ours."""
    leased = await take_lease(conn, task_id, owner, settings)
    if leased is None:
        return None, None, True
    task = dict(leased._mapping)
    if task["agent_id"] is None:
        return task, None, True
    agent_row = (await conn.execute(_AGENT, {"agent_id": task["agent_id"],
                                             "task_id": task_id})).first()
    if agent_row is None:
        return task, None, True
    agent = dict(agent_row._mapping)
    return task, agent, bool(agent.pop("resumable"))


async def end(task_id: int, status: TaskStatus, *, summary: str | None = None,
              error: str | None = None, connection: RunConnection | None = None) -> None:
    """End the task; on the run's `connection` when given (its kept connection: no pool
    checkout and, on PostgreSQL, no ping round trip)."""
    async def close() -> list[Any]:
        if connection is None:
            async with session_scope() as session:
                return await close_task(session, task_id, status, summary=summary, error=error)
        async with connection.transaction() as conn:
            return await close_task(conn, task_id, status, summary=summary, error=error)

    # close_task ends a task once however often it is called: safe to repeat on a dropped
    # connection (a commit that went through and lost its answer finds the task ended)
    publish(await retrying(close, f"end task {task_id}"))


async def _workspace_for(
    conn: Any, task: Task, agent: Agent, settings: Settings, on_driver: bool = False
) -> tuple[Workspace, bool]:
    """The task's workspace, and whether it is its parent's (a shared-workspace subtask).
    `conn` is the driver's own connection when `on_driver`."""
    parent_id = shared_workspace_of(task)
    if parent_id is not None:
        if on_driver:
            parent_workspace = await conn.fetchval(lease_postgres.WORKSPACE_OF, parent_id)
        else:
            parent_workspace = (await conn.execute(
                select(col(Task.workspace)).where(col(Task.id) == parent_id))
            ).scalar_one_or_none()
        if parent_workspace:
            return Workspace(Path(parent_workspace)), True
    # a resumed task may run on another agent; it keeps the workspace it started in
    if task.workspace:
        return Workspace(Path(task.workspace)), False
    return Workspace.for_task(settings.workspaces_dir, agent.name, task.id or 0), False


def _make_workspace(ctx: RunContext) -> None:
    """The workspace, with the files uploaded before it existed (one hop to a thread)."""
    ctx.workspace.create(title=ctx.task.title, description=ctx.task.description)
    _take_uploads(ctx)


def _take_uploads(ctx: RunContext) -> None:
    """Move files uploaded before the workspace existed into its input/ folder (through fs:
    an input/ the jail turned into a link is refused, never written through)."""
    var, staged = ctx.settings.var_dir / "uploads", str(ctx.task_id)
    if fs.kind(var, staged) != "dir":
        return
    for entry in fs.files(var, staged):
        fs.copy_file(var, f"{staged}/{entry.path}", ctx.workspace.root, f"input/{entry.path}",
                     limit=ctx.settings.max_upload_bytes)
    fs.remove(var, staged)


async def _prepare(ctx: RunContext, attempt: int) -> None:
    await asyncio.to_thread(_make_workspace, ctx)
    # written with the first phase change, before the first model call; the venv is made by
    # the first tool that needs it (app.tools.venvs)
    ctx.record("started", {"attempt": attempt, "worker": ctx.worker_id,
                           # as the tools name it, never its host path (the realpath of the
                           # root relative to itself, two walks of its folders, was always ".")
                           "workspace": ".",
                           "agent": ctx.agent.name})
    await deliver.prepare(ctx.task, ctx.workspace, ctx.settings, ctx.emit)


async def _prepared_run(ctx: RunContext, kind: Any, attempt: int) -> Any:
    await _prepare(ctx, attempt)
    return await kind(ctx)


async def _execute(ctx: RunContext, settings: Settings, attempt: int) -> str | None:
    """Prepare and run the task's kind under the keeper (a slow clone must not let the lease
    lapse) and end the task by how it went; "paused" when a person paused it (the caller lets
    the lease go once the run is wound up)."""
    kind = RUNNERS.get(ctx.task.kind)
    if kind is None:
        await end(ctx.task_id, TaskStatus.failed, error=f"unknown task kind {ctx.task.kind!r}")
        return None
    stop: dict[str, RunStopped] = {}
    work = asyncio.ensure_future(_prepared_run(ctx, kind, attempt))
    keeper = asyncio.ensure_future(keep_lease(ctx, work, stop, settings))
    remaining = ctx.limits.timeout_s - ctx.elapsed_before_s
    try:
        summary = await asyncio.wait_for(asyncio.shield(work), timeout=max(remaining, 0.01))
    except TimeoutError:
        await _stop(work)
        await _flush_quietly(ctx, work)
        await end(ctx.task_id, TaskStatus.failed,
                  error=f"time budget exhausted ({ctx.limits.timeout_s}s)")
        return None
    except asyncio.CancelledError:
        reason = stop.get("reason")
        if reason is None:
            raise
        log.info("task %s stopped: %s", ctx.task_id, reason)
        if isinstance(reason, TaskCancelled | TaskPaused):
            await ctx.emit("stopped", {"reason": str(reason)})
        return "paused" if isinstance(reason, TaskPaused) else None
    except RunPaused as paused:
        # waiting for subtasks or an answer; the slot and the lease are given back
        keeper.cancel()
        if str(paused) == TaskStatus.waiting_input.value:
            await deliver.notify_question(ctx.task_id)  # the run is over: nothing cancels it
        return None
    except SandboxUnavailable as exc:
        keeper.cancel()  # a renewal after the hand-back would hold the task again
        await hand_back(ctx, str(exc))
        return None
    except (RunStopped, LLMError) as exc:
        if not isinstance(exc, LeaseLost):  # the step's usage and events: another worker's now
            await _flush_quietly(ctx, work)
        await end(ctx.task_id, TaskStatus.failed, error=f"{type(exc).__name__}: {exc}")
        if isinstance(exc, TreeBudgetExceeded) and exc.root_id != ctx.task_id:
            await end(exc.root_id, TaskStatus.failed, error=f"{type(exc).__name__}: {exc}")
        return None
    except Exception as exc:
        if is_transient(exc):  # the database or broker stayed away: not the task's outcome
            keeper.cancel()
            await hand_back(ctx, f"{type(exc).__name__}: {str(exc)[:300]}", quiet=True)
            return None
        await _flush_quietly(ctx, work)  # a crash still leaves the step's usage and events
        raise
    finally:
        # awaited, not only told: a keeper left suspended in its UPDATE would hold SQLite's
        # write lock while the loop is idle between tasks
        keeper.cancel()
        await asyncio.wait({keeper}, timeout=STOP_GRACE_S)
    await ctx.settle()
    await _complete(ctx, summary)
    return None


async def _complete(ctx: RunContext, summary: str | None) -> None:
    """End the run's task as completed, with whatever the kind recorded last written before
    the task is seen as ended. On PostgreSQL, when its end writes nothing but the task, its
    agent's counts and its status event (no notification, nothing owed at once, not a subtask:
    app.tasks.lifecycle.ends_alone), one statement on the run's connection, which also writes
    the run's last step when a statement can (app.run.step_changes.covers) and says what the
    run does next; else the last step's write and the general end. Safe to repeat: a statement
    that went through and lost its answer finds the task ended, and the general end does
    nothing; nor is the step written again when it went with it."""
    sent: list[bool] = []  # the last step went out with the end (maybe through, unanswered)
    if not await retrying(lambda: _complete_alone(ctx, summary, sent),
                          f"end task {ctx.task_id}"):
        if sent and await _completed(ctx):
            ctx.pending = StepRecord()  # written with the end
        else:
            await ctx.flush()
        await end(ctx.task_id, TaskStatus.completed, summary=summary, connection=ctx.connection)


async def _completed(ctx: RunContext) -> bool:
    """Whether the task is completed already: an end that went out with the last step went
    through, and its answer was lost (the step is written, with it)."""
    async def status() -> Any:
        async with ctx.connection.driver() as driver:
            return await driver.fetchval(steps_postgres.STATUS_OF, ctx.task_id)
    return await retrying(status, f"read task {ctx.task_id}") == TaskStatus.completed.value


async def _complete_alone(ctx: RunContext, summary: str | None, sent: list[bool]) -> bool:
    task = ctx.task
    if get_engine().dialect.name != "postgresql" or task.parent_id is not None:
        return False
    ended = EndedTask(id=ctx.task_id, status=TaskStatus.completed, attempts=task.attempts,
                      notify=task.notify, github=task.github)
    if not ends_alone(ended):
        return False
    if ctx.pending and not step_changes.covers(ctx.pending, ctx.tree is not None):
        await ctx.flush()  # journal rows to settle, a tree's totals: the general write first
    record = ctx.pending
    async with ctx.connection.driver() as driver:
        if record:
            sent.append(True)
            ctx.completed = await steps_postgres.write_and_complete(
                driver, step_changes.changes_of(record), ended, summary=summary,
                finished_by=task.model_used)
        else:
            ctx.completed = await complete_alone(driver, ended, summary=summary,
                                                 finished_by=task.model_used)
    if ctx.completed is None:
        return False  # nothing written: the step goes with the general end
    if record is ctx.pending:
        ctx.pending = StepRecord()
    publish(ctx.completed.events)
    return True


async def _stop(work: asyncio.Future[Any]) -> None:
    """Cancel the run and give it a moment to unwind (a tool in a thread cannot be cut)."""
    work.cancel()
    await asyncio.wait({work}, timeout=STOP_GRACE_S)


async def _flush_quietly(ctx: RunContext, work: asyncio.Future[Any]) -> None:
    """Write what the stopped step recorded (its model call's usage, its events), so a run
    ended by a budget, the stuck detector or a crash does not lose them."""
    if not work.done():
        return  # still unwinding: writing now could race its own flush
    try:
        await ctx.flush()
    except Exception:  # noqa: BLE001 - ending the task matters more than its last events
        log.exception("could not write the last step of task %s", ctx.task_id)


async def run_task(task_id: int, owner: str | None = None) -> str:
    """Run or resume `task_id`; returns what happened (for logs and tests).

    One database connection serves the whole run (lease, step writes, end and what follows),
    taken at the start and given back at the end (app.core.db.RunConnection)."""
    connection = RunConnection()
    async with connection.kept():
        return await _run(task_id, owner or f"{socket.gethostname()}:{os.getpid()}:"
                          f"{uuid.uuid4().hex[:8]}", connection)


async def _run(task_id: int, owner: str, connection: RunConnection) -> str:
    settings = get_settings()
    # one transaction, safe to repeat (a lease whose commit went through and lost its answer
    # is ours already: the retry takes it again)
    attempt, started = await retrying(lambda: _start(task_id, owner, settings, connection),
                                      f"lease task {task_id}")
    if attempt is None:
        return "skipped"
    outcome = None
    ctx = started if isinstance(started, RunContext) else None
    try:
        if ctx is None:
            await end(task_id, TaskStatus.failed, error=str(started))
            return "failed"
        with bind(task_id=task_id, agent=ctx.agent.name):
            await ctx.listen()
            outcome = await _execute(ctx, settings, attempt)
    except Exception as exc:
        if is_transient(exc):  # never a task's outcome: the lease expires, the sweep re-queues
            log.warning("task %s interrupted by %s; it resumes from its checkpoint", task_id,
                        type(exc).__name__)
            return "interrupted"
        log.exception("task %s crashed", task_id)
        await end(task_id, TaskStatus.failed, error=f"internal error: {type(exc).__name__}")
        return "crashed"
    finally:
        if ctx is not None:
            ctx.stop_listening()
            # the task's persistent jail runs as its uid: ended before the uid is given back
            if ctx.services.shell.session is not None:
                await asyncio.to_thread(ctx.services.shell.close)
            release_uid(ctx.workspace.root)
            if outcome == "paused":
                await let_go(task_id, owner)
        completed = ctx.completed if ctx is not None else None
        if await _deliver_if_ended(task_id, connection, completed):
            await _assign_quietly(connection)
    return outcome or "ran"


async def _assign_quietly(connection: RunConnection) -> None:
    """Hand freed slots on; when the database or broker is away, the sweep does it later."""
    try:
        await assign_and_enqueue(connection)
    except Exception as exc:
        if not is_transient(exc):
            raise
        log.warning("could not assign waiting tasks (%s); the sweep will", type(exc).__name__)


async def _deliver_if_ended(task_id: int, connection: RunConnection,
                            completed: Completed | None = None) -> bool:
    """Hand the deliverables of an ended task to their own worker task, so this run ends when
    its status is set; no message when it has none (lazy report, no email, no GitHub).

    Whether tasks wait for an agent is read in the same statement: most runs end with none
    waiting, and then no other read is made. True: some may wait (or the read failed). A task
    the run ended in one statement (`completed`) was told all this by it: nothing is read."""
    if completed is not None:  # it owed nothing at once (ends_alone): only unsent email
        owed, agent, pending = completed.unsent, completed.agent, completed.pending
    else:
        try:
            async with connection.read() as conn:  # a read: no write lock
                row = (await conn.execute(_AFTER_END, {"ended_id": task_id})).first()
        except Exception:  # noqa: BLE001 - the outbox sweep still sends what is owed
            log.exception("could not enqueue deliverables for task %s", task_id)
            return True
        if row is None:
            return True
        status, agent, notify, github, unsent, pending = row
        owed = status in TERMINAL_VALUES and bool(
            get_settings().eager_reports or (notify or {}).get("email") or github or unsent)
    if owed:
        try:
            await enqueue([(task_id, agent or "")], name="deliver_task")
        except Exception:  # noqa: BLE001 - the outbox sweep still sends what is owed
            log.exception("could not enqueue deliverables for task %s", task_id)
    return bool(pending)


# whether any task waits for an agent (what app.tasks.enqueue.assign_and_enqueue looks for);
# on an alias, so it is not correlated with the ended task's row
_WAITING = table(Task).alias("waiting")
_PENDING = (select(_WAITING.c.id)
            .where(_WAITING.c.status == TaskStatus.pending.value)
            .exists())
# whether the task has email not yet sent (e.g. a `send_email` whose own flush failed)
_UNSENT = (select(OutboxMessage.id)
           .where(col(OutboxMessage.task_id) == bindparam("ended_id"),
                  col(OutboxMessage.status) == OutboxStatus.pending)
           .exists())
# built once: every run ends with it
_AFTER_END = (select(Task.status, Agent.name, Task.notify, Task.github)
              .add_columns(_UNSENT, _PENDING)
              .join(Agent, col(Agent.id) == col(Task.agent_id), isouter=True)
              .where(col(Task.id) == bindparam("ended_id")))


async def deliver_task(task_id: int) -> None:
    """Deliverables after the end; their failure is logged, never turned into a task failure."""
    try:
        await deliver.after_end(task_id)
    except Exception:  # noqa: BLE001 - the outbox and the sweep retry what did not go out
        log.exception("deliverables for task %s failed", task_id)
