"""Budgets: steps, tokens, cost and wall time, checked before each LLM call with its worst case."""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from app.core.config import Settings
from app.run.errors import BudgetExceeded
from app.run.pricing import DEFAULT_MAX_COMPLETION_TOKENS, cost_for


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


def estimate_prompt_tokens(messages: list[dict[str, Any]], tools: list[Any] | None) -> int:
    """A deliberately generous estimate: about four characters a token."""
    size = len(json.dumps(messages, default=str)) + len(json.dumps(tools or [], default=str))
    return size // 4 + 16


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
