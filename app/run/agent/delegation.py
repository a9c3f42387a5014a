"""Delegation: subtasks that draw from their parent's budget, and their results on resume.

    create_child     the `delegate` tool's service: a child task via submit_task, its limits the
                     tightest of its own defaults and what the parent (and the tree) has left
    TaskTree         the root's budget covers the whole tree: every call anywhere adds to the
                     root's `usage.tree_*` totals and is checked against the root's limits first
    child_results    on resume, each ended child's summary and files, copied into subtasks/<id>/
"""

from __future__ import annotations

import shutil
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError
from sqlalchemy import update
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from app.core.db import session_factory, session_scope
from app.models import TERMINAL, Task, TaskCreate, TaskMessage, User, table
from app.run import llm
from app.run.budget import (
    BudgetExceeded,
    Limits,
    Spent,
    TreeBudgetExceeded,
    remaining,
    reserve,
    tightest,
)
from app.run.context import RunContext
from app.submit import SubmissionError, submit_task
from app.tasks.events import append_event, publish
from app.tools.errors import ToolError

MAX_COPY_BYTES = 20 * 1024 * 1024


@dataclass(frozen=True)
class TaskTree:
    """The root task of a delegation tree, whose limits bound every task in it."""

    root_id: int
    limits: Limits

    async def spent(self) -> Spent:
        async with session_scope() as session:
            usage = (await session.exec(select(Task.usage).where(Task.id == self.root_id))).one()
        return Spent(int(usage.get("tree_steps", 0)), int(usage.get("tree_tokens", 0)),
                     float(usage.get("tree_cost_usd", 0.0)))

    async def check(self, model: str, prompt_tokens: int) -> None:
        """Raise TreeBudgetExceeded when the next call does not fit the tree's budget."""
        try:
            reserve(self.limits, await self.spent(), model=model, prompt_tokens=prompt_tokens)
        except BudgetExceeded as exc:
            raise TreeBudgetExceeded(f"budget of task tree #{self.root_id} exhausted: {exc}",
                                     root_id=self.root_id) from exc

    async def add(self, conn: AsyncConnection, c: llm.Completion) -> None:
        """Add one call to the root's tree totals, in the caller's transaction."""
        await self._bump(conn, 1, c.prompt_tokens + c.completion_tokens, c.cost_usd)

    async def _bump(
        self, conn: AsyncSession | AsyncConnection, steps: int, tokens: int, cost: float
    ) -> None:
        # read-modify-write under a row lock (PostgreSQL) / BEGIN IMMEDIATE (SQLite)
        usage = (await conn.execute(
            select(Task.usage).where(col(Task.id) == self.root_id).with_for_update()
        )).scalar_one()
        usage = dict(usage or {})
        usage["tree_steps"] = int(usage.get("tree_steps", 0)) + steps
        usage["tree_tokens"] = int(usage.get("tree_tokens", 0)) + tokens
        usage["tree_cost_usd"] = round(float(usage.get("tree_cost_usd", 0.0)) + cost, 8)
        await conn.execute(update(table(Task))
                           .where(col(Task.id) == self.root_id).values(usage=usage))

    async def start(self, ctx: RunContext) -> None:
        """Seed the root's tree totals with what the root itself spent before delegating."""
        async with session_scope() as session:
            usage = (await session.exec(select(Task.usage).where(Task.id == self.root_id))).one()
            if "tree_steps" not in (usage or {}):
                await self._bump(session, ctx.spent.steps, ctx.spent.tokens, ctx.spent.cost_usd)


async def attach_tree(ctx: RunContext, state: dict[str, Any]) -> None:
    """Give the context its tree (if it is in one) so every call is checked and counted."""
    if ctx.task.parent_id is None:
        if state.get("children"):
            ctx.tree = TaskTree(ctx.task_id, ctx.limits)
        return
    async with session_scope() as session:
        root = await session.get(Task, ctx.task.parent_id)
        while root is not None and root.parent_id is not None:
            root = await session.get(Task, root.parent_id)
    assert root is not None and root.id is not None
    ctx.tree = TaskTree(root.id, Limits.resolve(root.budget or {}, ctx.settings))


async def child_limits(ctx: RunContext) -> Limits:
    """A child's limits: its own defaults, capped by what the parent and the tree have left."""
    elapsed = ctx.elapsed_before_s + time.monotonic() - ctx.started_monotonic
    caps = [Limits.resolve({}, ctx.settings), remaining(ctx.limits, ctx.spent, elapsed)]
    tree = ctx.tree
    if tree is not None:
        caps.append(remaining(tree.limits, await tree.spent(), 0.0))
    return tightest(*caps)


async def create_child(
    ctx: RunContext, state: dict[str, Any], title: str, description: str, complexity: int,
    shared_workspace: bool = False,
) -> int:
    """Create a subtask of ctx's task; the loop pauses before its next step until all end."""
    config = ctx.agent.config or {}
    children: list[int] = state.setdefault("children", [])
    if len(children) >= int(config.get("max_children", 8)):
        raise ToolError(f"this task already has {len(children)} subtasks, the most it may have")
    if await _depth(ctx) >= int(config.get("max_delegation_depth", 3)):
        raise ToolError("subtasks nest too deep; do this part yourself")
    if ctx.tree is None:
        ctx.tree = TaskTree(ctx.task_id, ctx.limits)
        await ctx.tree.start(ctx)
    limits = await child_limits(ctx)
    try:
        task_in = TaskCreate(
            title=title, description=description, complexity=complexity,
            priority=min(100, ctx.task.priority + 1),  # finish subtasks before new work
            budget={"max_steps": limits.max_steps, "max_tokens": limits.max_tokens,
                    "max_cost_usd": round(limits.max_cost_usd, 6), "timeout_s": limits.timeout_s},
            inputs={SHARED_KEY: ctx.task_id} if shared_workspace else {},
        )
        if shared_workspace:
            ctx.workspace.mark_shared()
        # a read session: submit_task opens its own write transaction
        async with session_factory()() as session:
            owner = await session.get(User, ctx.task.owner_id)
            assert owner is not None
            child = await submit_task(session=session, task_in=task_in, owner=owner,
                                      parent_id=ctx.task_id)
    except (ValidationError, SubmissionError) as exc:
        raise ToolError(f"the subtask was refused: {exc}") from exc
    assert child.id is not None
    children.append(child.id)
    state["awaiting_children"] = True
    await ctx.emit("delegated", {"child_id": child.id, "title": child.title,
                                 "complexity": child.complexity, "budget": child.budget,
                                 "shared_workspace": shared_workspace})
    return child.id


async def _depth(ctx: RunContext) -> int:
    depth, parent_id = 0, ctx.task.parent_id
    async with session_scope() as session:
        while parent_id is not None:
            depth += 1
            parent_id = (await session.exec(
                select(Task.parent_id).where(Task.id == parent_id))).one()
    return depth


async def child_results(ctx: RunContext, state: dict[str, Any]) -> list[dict[str, Any]]:
    """Ended children not yet reported: status, summary or error, and their output files."""
    reported: list[int] = state.setdefault("reported_children", [])
    ended = [s.value for s in TERMINAL]
    async with session_scope() as session:
        rows = (await session.exec(
            select(Task).where(Task.parent_id == ctx.task_id, col(Task.status).in_(ended),
                               col(Task.id).not_in(reported or [0])).order_by(col(Task.id))
        )).all()
    results = []
    for child in rows:
        assert child.id is not None
        files = _copy_outputs(child, ctx.workspace.root / "subtasks" / str(child.id))
        results.append({"id": child.id, "title": child.title, "status": child.status,
                        "summary": child.summary, "error": child.error, "files": files})
        reported.append(child.id)
    return results


def _copy_outputs(child: Task, dest: Path) -> list[str]:
    """Copy the child's output/ into the parent's workspace; returns the copied paths."""
    source = Path(child.workspace or "") / "output"
    if not child.workspace or not source.is_dir():
        return []
    files = sorted(p for p in source.rglob("*") if p.is_file() and not p.is_symlink())
    if sum(p.stat().st_size for p in files) > MAX_COPY_BYTES:
        return [f"{p.relative_to(source)} (not copied: too large)" for p in files][:100]
    copied = []
    for path in files[:100]:
        target = dest / path.relative_to(source)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copyfile(path, target)
        copied.append(str(Path("subtasks") / str(child.id) / path.relative_to(source)))
    return copied


SHARED_KEY = "shared_workspace_of"


def shared_workspace_of(task: Task) -> int | None:
    """The parent whose workspace this child works in; honoured only for the task's own parent
    (a submitter cannot point a task at someone else's workspace: parent_id is set by us)."""
    wanted = ((task.spec or {}).get("inputs") or {}).get(SHARED_KEY)
    return task.parent_id if wanted is not None and wanted == task.parent_id else None


async def send_task_message(ctx: RunContext, task_id: int, content: str) -> str:
    """Post a message to this task's parent or one of its children (the channel people use)."""
    async with session_scope() as session:
        target = await session.get(Task, task_id)
        related = target is not None and (
            target.id == ctx.task.parent_id or target.parent_id == ctx.task_id)
        if target is None or not related:
            raise ToolError(f"task {task_id} is neither this task's parent nor one of its"
                            " subtasks")
        if target.status in {s.value for s in TERMINAL}:
            raise ToolError(f"task {task_id} has already ended ({target.status})")
        message = TaskMessage(task_id=task_id, author=f"task:{ctx.task_id}", content=content)
        session.add(message)
        await session.flush()
        event = await append_event(session, task_id, "message", {
            "message_id": message.id, "author": message.author, "content": content[:2000]})
    publish([event])
    return f"message sent to task #{task_id}; it sees it on its next step"


__all__ = ["TaskTree", "attach_tree", "child_results", "create_child", "send_task_message",
           "shared_workspace_of"]
