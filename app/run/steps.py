"""StepRecord: what one step of a run has to persist, written in one transaction.

A step (model call → its tool calls) used to write its `llm_call` event and usage, every
`tool_call` event and its resource use, and the checkpoint in separate transactions, at 3–8 ms
each through SQLAlchemy async. RunContext now collects them here and `write_step` stores them
together: one UPDATE of the task row (sequence bump, counters, usage, phase), one INSERT of the
events, one upsert of the checkpoint. They are Core statements on a Core connection: an ORM
session added ~2 ms of Python per step around the same SQL.

The record is flushed right after a reply's tool calls have run and always before the next model
call, so the exactly-once rule holds as before: a tool's effect is durable in the same commit as
the checkpoint that says it happened (before, a crash between those two commits repeated it).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sqlalchemy import case, update
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlmodel import col, select

from app.models import (
    TERMINAL_VALUES,
    Task,
    TaskCheckpoint,
    TaskEvent,
    ToolIntent,
    table,
    utcnow,
)
from app.run import llm
from app.tasks.events import append_events
from app.tools.registry import Dispatched

if TYPE_CHECKING:
    from app.run.budget import TaskTree



@dataclass
class StepRecord:
    events: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    calls: list[tuple[llm.Completion, str]] = field(default_factory=list)  # (completion, role)
    tool_results: list[Dispatched] = field(default_factory=list)
    phase: str | None = None
    checkpoint: tuple[list[dict[str, Any]], dict[str, Any], str | None] | None = None
    settle: list[int] = field(default_factory=list)  # journal rows this checkpoint covers
    done: list[tuple[int, dict[str, Any]]] = field(default_factory=list)  # (row, result)

    def __bool__(self) -> bool:
        return bool(self.events or self.calls or self.tool_results or self.phase
                    or self.checkpoint or self.settle or self.done)


async def write_step(
    conn: AsyncConnection, task_id: int, record: StepRecord, tree: TaskTree | None
) -> list[TaskEvent]:
    """Store `record` in the connection's transaction (the caller commits and publishes)."""
    values: dict[str, Any] = {}
    estimated = sum(1 for c, _ in record.calls if c.usage_estimated)
    cached = sum(c.cached_tokens for c, _ in record.calls)
    if record.tool_results or estimated or cached:
        # read-modify-write of a JSON column: under the row lock (PostgreSQL) or the write lock
        # BEGIN IMMEDIATE already holds (SQLite)
        usage = (await conn.execute(
            select(Task.usage).where(col(Task.id) == task_id).with_for_update())).scalar_one()
        usage = dict(usage or {})
        for result in record.tool_results:
            usage = add_resources(usage, result)
        if estimated:  # the provider reported no usage: these calls' tokens are estimates
            usage["estimated_llm_calls"] = int(usage.get("estimated_llm_calls", 0)) + estimated
        if cached:  # prompt tokens the provider read from its cache (billed at its lower rate)
            usage["cached_prompt_tokens"] = int(usage.get("cached_prompt_tokens", 0)) + cached
        values["usage"] = usage
    if record.calls:
        values.update(
            steps=Task.steps + len(record.calls),
            prompt_tokens=Task.prompt_tokens + sum(c.prompt_tokens for c, _ in record.calls),
            completion_tokens=Task.completion_tokens
            + sum(c.completion_tokens for c, _ in record.calls),
            cost_usd=Task.cost_usd + sum(c.cost_usd for c, _ in record.calls),
        )
        # model_used names the model doing the work: an inspector's call does not change it
        agent_models = [c.model for c, role in record.calls if role == "agent"]
        if agent_models:
            values["model_used"] = agent_models[-1]
    if record.phase is not None:
        running = col(Task.status).not_in(TERMINAL_VALUES)
        values["status"] = case((running, record.phase), else_=Task.status)
        values["phase"] = case((running, record.phase), else_=Task.phase)
    events = await append_events(conn, task_id, record.events, task_values=values)
    if tree is not None:
        for completion, _role in record.calls:
            await tree.add(conn, completion)
    if record.checkpoint is not None:
        await _upsert_checkpoint(conn, task_id, *record.checkpoint)
    for intent_id, outcome in record.done:
        await conn.execute(update(table(ToolIntent)).where(col(ToolIntent.id) == intent_id)
                           .values(status="done", result=outcome, updated_at=utcnow()))
    if record.settle:
        await conn.execute(update(table(ToolIntent))
                           .where(col(ToolIntent.id).in_(record.settle))
                           .values(settled=True, updated_at=utcnow()))
    return events


async def _upsert_checkpoint(
    conn: AsyncConnection, task_id: int, messages: list[dict[str, Any]], state: dict[str, Any],
    phase: str | None,
) -> None:
    row = {"task_id": task_id, "messages": messages, "state": state, "phase": phase,
           "updated_at": utcnow()}
    insert = postgresql.insert if conn.dialect.name == "postgresql" else sqlite.insert
    stmt = insert(table(TaskCheckpoint)).values(**row)
    await conn.execute(stmt.on_conflict_do_update(
        index_elements=[col(TaskCheckpoint.task_id)],
        set_={k: stmt.excluded[k] for k in ("messages", "state", "phase", "updated_at")},
    ))


def add_resources(usage: dict[str, Any], result: Dispatched) -> dict[str, Any]:
    """The task's resource totals with one more tool call added."""
    data = result.data or {}
    usage["tool_calls"] = int(usage.get("tool_calls", 0)) + 1
    usage["tool_refusals"] = int(usage.get("tool_refusals", 0)) + int(result.refused)
    usage["tool_seconds"] = round(float(usage.get("tool_seconds", 0.0))
                                  + result.duration_ms / 1000, 4)
    if isinstance(data.get("cpu_s"), int | float):
        usage["cpu_s"] = round(float(usage.get("cpu_s", 0.0)) + data["cpu_s"], 4)
    if isinstance(data.get("peak_rss_kb"), int | float):
        usage["peak_rss_kb"] = max(int(usage.get("peak_rss_kb", 0)), int(data["peak_rss_kb"]))
    return usage
