"""RunContext: what every runner kind (agent, playbook, scenario) uses to act for one task.

It owns the durable side of a run: events, usage accounting, budget checks before each model
call, the task's inbox, checkpoints for resuming, and tool dispatch with its `tool_call` event.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from sqlalchemy import update
from sqlmodel import col, select

from app.agent import llm
from app.agent.budget import Limits, Spent, estimate_prompt_tokens, reserve
from app.agent.errors import BudgetExceeded
from app.config import Settings
from app.db import session_scope
from app.events import append_event, publish
from app.models import Agent, Task, TaskCheckpoint, TaskMessage, utcnow
from app.redact import redact, redact_obj
from app.sandbox.workspace import Workspace
from app.tools.registry import Dispatched, ToolContext, dispatch

if TYPE_CHECKING:
    from app.agent.delegation import TaskTree


@dataclass
class RunContext:
    task: Task
    agent: Agent
    workspace: Workspace
    settings: Settings
    limits: Limits
    worker_id: str
    spent: Spent = field(default_factory=Spent)
    started_monotonic: float = field(default_factory=time.monotonic)
    elapsed_before_s: float = 0.0
    services: dict[str, Any] = field(default_factory=dict)
    borrowed_workspace: bool = False  # a subtask working in its parent's workspace
    # Set when the task is in a tree of delegated tasks: the root's budget covers them all.
    tree: TaskTree | None = None

    @property
    def task_id(self) -> int:
        assert self.task.id is not None
        return self.task.id

    # -- the event log -----------------------------------------------------------------------
    async def emit(self, type: str, data: dict[str, Any] | None = None) -> None:
        """Append one event durably (its own short transaction) and publish it."""
        async with session_scope() as session:
            event = await append_event(session, self.task_id, type, data or {})
        publish([event])

    async def set_phase(self, phase: str) -> None:
        async with session_scope() as session:
            await session.execute(
                update(Task)
                .where(col(Task.id) == self.task_id, col(Task.status).not_in(_TERMINAL))
                .values(status=phase, phase=phase, updated_at=utcnow())
            )
            event = await append_event(session, self.task_id, "phase", {"phase": phase})
        publish([event])
        self.task.phase = phase

    # -- the model ---------------------------------------------------------------------------
    def models(self) -> list[str]:
        return [self.agent.model, *self.agent.fallback_models]

    def check_time(self) -> None:
        elapsed = self.elapsed_before_s + time.monotonic() - self.started_monotonic
        if elapsed > self.limits.timeout_s:
            raise BudgetExceeded(
                f"time budget exhausted ({elapsed:.0f}s of {self.limits.timeout_s}s)")

    async def chat(
        self,
        messages: list[dict[str, Any]],
        *,
        tools: list[dict[str, Any]] | None = None,
        models: list[str] | None = None,
        response_format: dict[str, Any] | None = None,
        role: str = "agent",
    ) -> llm.Completion:
        """One budget-checked model call; usage is stored and an `llm_call` event written."""
        models = models or self.models()
        self.check_time()
        prompt_estimate = estimate_prompt_tokens(messages, tools)
        if self.tree is not None:
            await self.tree.check(models[0], prompt_estimate)
        cap = reserve(self.limits, self.spent, model=models[0], prompt_tokens=prompt_estimate)
        started = time.perf_counter()
        completion = await llm.chat(
            self.settings, models=models, messages=messages, tools=tools, max_tokens=cap,
            response_format=response_format, on_event=self.emit,
        )
        await self.record_usage(completion, role=role, ms=(time.perf_counter() - started) * 1000)
        return completion

    async def record_usage(self, c: llm.Completion, *, role: str, ms: float) -> None:
        self.spent.steps += 1
        self.spent.tokens += c.prompt_tokens + c.completion_tokens
        self.spent.cost_usd += c.cost_usd
        # model_used names the model doing the work: an inspector's call does not change it
        model = {"model_used": c.model} if role == "agent" else {}
        async with session_scope() as session:
            await session.execute(
                update(Task)
                .where(col(Task.id) == self.task_id)
                .values(
                    steps=Task.steps + 1,
                    prompt_tokens=Task.prompt_tokens + c.prompt_tokens,
                    completion_tokens=Task.completion_tokens + c.completion_tokens,
                    cost_usd=Task.cost_usd + c.cost_usd,
                    **model,
                )
            )
            if self.tree is not None:
                await self.tree.add(session, c)
            event = await append_event(session, self.task_id, "llm_call", {
                "role": role, "model": c.model, "prompt_tokens": c.prompt_tokens,
                "completion_tokens": c.completion_tokens, "cost_usd": round(c.cost_usd, 6),
                "duration_ms": round(ms, 1), "tool_calls": len(c.tool_calls),
                "content": (c.content or "")[:2000],
            })
        publish([event])

    # -- tools -------------------------------------------------------------------------------
    def tool_context(self) -> ToolContext:
        return ToolContext(
            task_id=self.task_id, workspace=self.workspace, settings=self.settings,
            emit=self.emit, agent_name=self.agent.name,
            allowed_commands=self.agent.allowed_commands,
            agent_config=dict(self.agent.config or {}),
            task=self.task.model_dump(), services=self.services,
        )

    async def call_tool(self, name: str, arguments: str | dict[str, Any]) -> Dispatched:
        """Dispatch one tool call; record it as a `tool_call` event and add its resource use
        (duration, CPU seconds, peak memory, refusals) to the task's totals, in one transaction."""
        if self.workspace.shared:
            async with self.workspace.lock():
                result = await dispatch(self.tool_context(), name, arguments,
                                        self.agent.allowed_tools)
        else:
            result = await dispatch(self.tool_context(), name, arguments, self.agent.allowed_tools)
        args = arguments if isinstance(arguments, dict) else redact(str(arguments))[:4000]
        async with session_scope() as session:
            event = await append_event(session, self.task_id, "tool_call", {
                "tool": name, "args": redact_obj(args), "ok": result.ok,
                "refused": result.refused, "duration_ms": round(result.duration_ms, 2),
                "output": result.output[:4000], "data": result.data,
            })
            task = await session.get(Task, self.task_id, with_for_update=True)
            if task is not None:
                await session.refresh(task, ["usage"])
                usage = add_resources(dict(task.usage or {}), result)
                await session.execute(
                    update(Task).where(col(Task.id) == self.task_id).values(usage=usage))
        publish([event])
        return result

    # -- the inbox and checkpoints -----------------------------------------------------------
    async def take_messages(self) -> list[TaskMessage]:
        """Messages posted to the task that the agent has not seen yet (now marked seen)."""
        async with session_scope() as session:
            rows = list((await session.exec(
                select(TaskMessage)
                .where(TaskMessage.task_id == self.task_id, col(TaskMessage.delivered_at).is_(None))
                .order_by(col(TaskMessage.id))
            )).all())
            for row in rows:
                row.delivered_at = utcnow()
                session.add(row)
        return rows

    async def load_checkpoint(self) -> TaskCheckpoint | None:
        async with session_scope() as session:
            return await session.get(TaskCheckpoint, self.task_id)

    async def save_checkpoint(
        self, messages: list[dict[str, Any]], state: dict[str, Any]
    ) -> None:
        async with session_scope() as session:
            row = await session.get(TaskCheckpoint, self.task_id)
            if row is None:
                row = TaskCheckpoint(task_id=self.task_id)
            row.messages = list(messages)
            row.state = dict(state)
            row.phase = self.task.phase
            row.updated_at = utcnow()
            session.add(row)

    async def sleep(self, seconds: float) -> None:
        await asyncio.sleep(seconds)


_TERMINAL = ("completed", "failed", "cancelled")


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
