"""Pausing a task without holding an agent slot: for its subtasks, or for a person's answer.

    run (slot held) ─ pause ─► waiting_children ─ last child ends (lifecycle.wake_parent) ─► pending
                          └──► waiting_input ─ a message arrives (api add_message) ───────► pending
                                     │       └ no answer within input_timeout_s (sweep) ──► failed
                                     └ the owner is told: notify.email (outbox), notify.webhook,
                                       the dashboard's inbox; each says where to answer and when
                                       the wait ends

A pause checkpoints the conversation, gives the agent's slot back, clears the lease and returns
from the run (`RunPaused`); the scheduler later gives the task to any agent covering it, which
resumes from the checkpoint. Nothing waits while holding a slot, so one slot cannot deadlock.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any

from sqlalchemy import update
from sqlmodel import col, select

from app.core.config import get_settings
from app.core.db import get_engine, session_scope
from app.integrations import outbox
from app.models import Task, TaskStatus, utcnow
from app.tasks.events import append_event, publish
from app.tasks.lifecycle import close_task, wake_parent
from app.tasks.scheduling import release_slot

if TYPE_CHECKING:  # the sweep (in every API process) needs neither, only a run does
    from app.run.context import RunContext
    from app.run.state import LoopState


class RunPaused(Exception):  # noqa: N818 - not an error: the run hands the task back
    """The run stops here; the task waits (not running, not ended) and resumes later."""


async def pause(
    ctx: RunContext, status: TaskStatus, messages: list[dict[str, Any]], state: LoopState,
    *, question: str | None = None,
) -> None:
    """Checkpoint, set `status`, release the slot, clear the lease; then raise RunPaused."""
    state.wait = {"status": status.value, "since": utcnow().isoformat(), "question": question}
    await ctx.save_checkpoint(messages, state.to_checkpoint())
    async with session_scope() as session:
        result = await session.execute(
            update(Task)
            .where(col(Task.id) == ctx.task_id, col(Task.lease_owner) == ctx.worker_id)
            # attempts restart: a pause is a clean hand-back, not a worker dying mid-task
            .values(status=status.value, lease_owner=None, lease_expires_at=None, attempts=0,
                    spec={**(ctx.task.spec or {}), "wait": state.wait}, updated_at=utcnow())
            .returning(col(Task.id))
        )
        if result.scalar_one_or_none() is None:
            raise RunPaused("the lease was lost before the pause")
        held = await release_slot(session, ctx.task_id)
        data: dict[str, Any] = {"status": status.value, "slot_released": held}
        if question:
            data["question"] = question
        events = [await append_event(session, ctx.task_id, "status", data)]
        if question:
            events.append(await append_event(session, ctx.task_id, "question",
                                             {"question": question}))
            notify = {**(ctx.task.notify or {})}
            sent_to = outbox.enqueue_question(session, task_id=ctx.task_id, notify=notify,
                                              question=question, asked_at=state.wait["since"])
            if sent_to:
                events.append(await append_event(session, ctx.task_id, "question_sent", {
                    "email": list(notify.get("email") or []),
                    "webhooks": len(outbox.webhook_urls(notify, get_settings())),
                    "messages": len(sent_to)}))
        # children may all have ended before this pause: wake at once rather than never
        events += await wake_parent(session, ctx.task_id)
    publish(events)
    # the owner is notified by the runner once this run is over (app.run.runner): here the
    # lease is already gone, and the lease keeper would cancel a slow SMTP exchange midway
    raise RunPaused(status.value)


def take_wait(state: LoopState) -> dict[str, Any] | None:
    """The wait this run resumes from (removed from the state), if any."""
    wait, state.wait = state.wait, None
    return wait


async def expire_input_waits() -> int:
    """Fail tasks that asked a question nobody answered within `input_timeout_s`."""
    timeout = get_settings().input_timeout_s
    cutoff = utcnow() - timedelta(seconds=timeout)
    expired = 0
    if not await _any_in(TaskStatus.waiting_input):  # most sweeps: no write lock taken
        return 0
    async with session_scope() as session:
        rows = (await session.exec(
            select(Task).where(col(Task.status) == TaskStatus.waiting_input.value)
        )).all()
        events = []
        for task in rows:
            since = (task.spec or {}).get("wait", {}).get("since")
            if since and datetime.fromisoformat(since) < cutoff:
                assert task.id is not None
                events += await close_task(session, task.id, TaskStatus.failed,
                                           error=f"no answer within {timeout:g} s")
                expired += 1
    publish(events)
    return expired


async def wake_waiting_parents() -> int:
    """Backstop for a missed wake-up: parents whose children have all ended go to pending."""
    if not await _any_in(TaskStatus.waiting_children):
        return 0
    async with session_scope() as session:
        ids = (await session.exec(
            select(Task.id).where(col(Task.status) == TaskStatus.waiting_children.value)
        )).all()
        events = []
        for task_id in ids:
            assert task_id is not None
            events += await wake_parent(session, task_id)
    publish(events)
    return len(events)


async def _any_in(status: TaskStatus) -> bool:
    """Whether any task is in `status`: a plain read, so an idle sweep (every second, in every
    process) does not queue for SQLite's write lock."""
    async with get_engine().connect() as conn:
        found = (await conn.execute(
            select(Task.id).where(col(Task.status) == status.value).limit(1))).first()
    return found is not None
