"""Budgets: steps, tokens, cost and wall time, checked before each LLM call with its worst case.

TaskTree: the root's budget covers a whole tree of delegated tasks: every call anywhere adds to
the root's `usage.tree_*` totals and is checked against the root's limits first.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Connection, update
from sqlalchemy.orm import Session
from sqlmodel import col, select

from app.core.config import Settings
from app.core.db import session_scope
from app.models import Task, table
from app.run import llm
from app.run.errors import BudgetExceeded
from app.run.pricing import DEFAULT_MAX_COMPLETION_TOKENS, cost_for
from app.tools.registry import schemas_json


@dataclass(frozen=True)
class Limits:
    max_steps: int
    max_tokens: int
    max_cost_usd: float
    timeout_s: int

    @classmethod
    def resolve(cls, budget: dict[str, Any], settings: Settings) -> Limits:
        """The task's budget with the configured defaults filling the gaps."""
        return cls(
            max_steps=budget.get("max_steps") or settings.default_max_steps,
            max_tokens=budget.get("max_tokens") or settings.default_max_tokens,
            max_cost_usd=(
                budget["max_cost_usd"]
                if budget.get("max_cost_usd") is not None
                else settings.default_max_cost_usd
            ),
            timeout_s=budget.get("timeout_s") or settings.default_timeout_s,
        )


@dataclass
class Spent:
    steps: int = 0
    tokens: int = 0
    cost_usd: float = 0.0


def estimate_prompt_tokens(messages: list[dict[str, Any]], tools: list[Any] | None,
                           messages_json: str | None = None) -> int:
    """A deliberately generous estimate: about four characters a token (`messages_json`:
    the messages already serialised, as the request will send them)."""
    size = len(messages_json if messages_json is not None
               else json.dumps(messages, default=str))
    return (size + (len(schemas_json(tools)) if tools else 2)) // 4 + 16


def reserve(
    limits: Limits, spent: Spent, *, model: str, prompt_tokens: int
) -> int:
    """Check the next call fits; returns the completion-token cap to send with it."""
    if spent.steps >= limits.max_steps:
        raise BudgetExceeded(f"step budget exhausted ({spent.steps}/{limits.max_steps} steps)")
    left = limits.max_tokens - spent.tokens - prompt_tokens
    if left < 16:
        raise BudgetExceeded(
            f"token budget exhausted ({spent.tokens} used, next call needs ~{prompt_tokens}"
            f" of {limits.max_tokens})"
        )
    cap = min(DEFAULT_MAX_COMPLETION_TOKENS, left)
    worst = cost_for(model, prompt_tokens, cap)
    if spent.cost_usd + worst > limits.max_cost_usd:
        raise BudgetExceeded(
            f"cost budget exhausted (${spent.cost_usd:.4f} spent, next call may cost"
            f" ${worst:.4f}, limit ${limits.max_cost_usd:.4f})"
        )
    return cap


class TreeBudgetExceeded(BudgetExceeded):
    """The root's budget, which covers every delegated subtask, ran out: the whole tree stops."""

    def __init__(self, message: str, *, root_id: int) -> None:
        super().__init__(message)
        self.root_id = root_id


def remaining(limits: Limits, spent: Spent, elapsed_s: float) -> Limits:
    """What is left of `limits` after `spent` and `elapsed_s` (never below the smallest budget)."""
    return Limits(
        max_steps=max(1, limits.max_steps - spent.steps),
        max_tokens=max(1, limits.max_tokens - spent.tokens),
        max_cost_usd=max(0.0, limits.max_cost_usd - spent.cost_usd),
        timeout_s=max(1, int(limits.timeout_s - elapsed_s)),
    )


def tightest(*limits: Limits) -> Limits:
    """Field by field, the smallest of several limits."""
    return Limits(
        max_steps=min(x.max_steps for x in limits),
        max_tokens=min(x.max_tokens for x in limits),
        max_cost_usd=min(x.max_cost_usd for x in limits),
        timeout_s=min(x.timeout_s for x in limits),
    )


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

    def add(self, conn: Connection, c: llm.Completion) -> None:
        """Add one call to the root's tree totals, in the caller's transaction."""
        self._bump(conn, 1, c.prompt_tokens + c.completion_tokens, c.cost_usd)

    def _bump(self, conn: Connection | Session, steps: int, tokens: int, cost: float) -> None:
        # read-modify-write under a row lock (PostgreSQL) / BEGIN IMMEDIATE (SQLite)
        usage = conn.execute(
            select(Task.usage).where(col(Task.id) == self.root_id).with_for_update()
        ).scalar_one()
        usage = dict(usage or {})
        usage["tree_steps"] = int(usage.get("tree_steps", 0)) + steps
        usage["tree_tokens"] = int(usage.get("tree_tokens", 0)) + tokens
        usage["tree_cost_usd"] = round(float(usage.get("tree_cost_usd", 0.0)) + cost, 8)
        conn.execute(update(table(Task)).where(col(Task.id) == self.root_id).values(usage=usage))

    async def start(self, spent: Spent) -> None:
        """Seed the root's tree totals with what the root itself spent before delegating."""
        async with session_scope() as session:
            usage = (await session.exec(select(Task.usage).where(Task.id == self.root_id))).one()
            if "tree_steps" not in (usage or {}):
                await session.run_sync(self._bump, spent.steps, spent.tokens, spent.cost_usd)
