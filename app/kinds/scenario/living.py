"""Living mode: an ecosystem that runs in rounds, under a budget per day, so its characters live
between a user's visits.

    Living           the `living` document of an ecosystem: what a round plays (a scenario
                     definition casting the members), how long between rounds, the daily
                     budget (USD and/or turns), and what today has spent
    Living.rolled    the same with today's counters, reset when the UTC day has changed
    Living.stop      why no round may start now (budget spent), or None
    Living.started   a round's turns are charged when it starts (so a day never runs more
    Living.ended     turns than its budget), its cost in USD when it ends; MAX_FAILURES
                     failed rounds in a row pause living mode (Living.failing)
    round_cost_cap   the USD a round may still spend: what is left of today's budget

A round is an ordinary scenario task (kind `scenario`, the ecosystem's ties in and written
back), started by the periodic sweep (app.api.living_rounds); pausing stops new rounds (the one
in flight plays to its end), resuming starts the next at once.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from typing import Any

from pydantic import BaseModel, ConfigDict, Field, model_validator

DEFAULT_INTERVAL_S = 3600
DEFAULT_TURNS = 3
MAX_FAILURES = 3  # rounds in a row that failed before living mode pauses itself


class DailyBudget(BaseModel):
    """What one UTC day of rounds may spend; at least one of the two."""

    model_config = ConfigDict(extra="forbid")

    usd_per_day: float | None = Field(default=None, gt=0, le=10_000)
    turns_per_day: int | None = Field(default=None, ge=1, le=100_000)

    @model_validator(mode="after")
    def _one(self) -> DailyBudget:
        if self.usd_per_day is None and self.turns_per_day is None:
            raise ValueError("give usd_per_day, turns_per_day or both: a living ecosystem "
                             "never runs without a daily budget")
        return self


class Living(BaseModel):
    model_config = ConfigDict(extra="ignore")

    definition: dict[str, Any] = Field(default_factory=dict)
    interval_s: int = DEFAULT_INTERVAL_S
    budget: DailyBudget
    generation: str = ""  # new at each set-up: a round's Idempotency-Key is unique to it
    day: str = ""  # the UTC date today's counters are for
    spent_usd: float = 0.0
    turns: int = 0
    rounds_today: int = 0
    rounds: int = 0  # rounds started since living mode was set up
    last_round: int | None = None  # the task id of the latest round
    stopped: str | None = None  # why the sweep is not starting rounds (budget, an error)
    failures: int = 0  # rounds in a row that ended failed or cancelled

    def rolled(self, now: datetime) -> Living:
        today = now.astimezone(UTC).date().isoformat()
        if self.day == today:
            return self
        return self.model_copy(update={"day": today, "spent_usd": 0.0, "turns": 0,
                                       "rounds_today": 0, "stopped": None})

    def stop(self, round_turns: int) -> str | None:
        """Why a round of `round_turns` turns may not start today (None: it may)."""
        b = self.budget
        if b.usd_per_day is not None and self.spent_usd >= b.usd_per_day:
            return f"today's budget is spent: ${self.spent_usd:.4f} of ${b.usd_per_day:g}"
        if b.turns_per_day is not None and self.turns + round_turns > b.turns_per_day:
            return (f"today's budget is spent: {self.turns} of {b.turns_per_day} turns "
                    f"(a round plays {round_turns})")
        return None

    def started(self, task_id: int, round_turns: int) -> Living:
        return self.model_copy(update={
            "turns": self.turns + round_turns, "rounds_today": self.rounds_today + 1,
            "rounds": self.rounds + 1, "last_round": task_id, "stopped": None})

    def ended(self, cost_usd: float, ok: bool = True) -> Living:
        return self.model_copy(update={"spent_usd": round(self.spent_usd + cost_usd, 6),
                                       "failures": 0 if ok else self.failures + 1})

    def failing(self) -> bool:
        """Rounds keep failing (a model that is down, a cast that cannot play): stop starting
        more — a budget in USD alone would not stop rounds that cost nothing."""
        return self.failures >= MAX_FAILURES

    def round_cost_cap(self) -> float | None:
        if self.budget.usd_per_day is None:
            return None
        return max(round(self.budget.usd_per_day - self.spent_usd, 6), 0.0)


def next_day(now: datetime) -> datetime:
    """The start of the next UTC day: when a spent budget is whole again."""
    day = now.astimezone(UTC).replace(hour=0, minute=0, second=0, microsecond=0)
    return day + timedelta(days=1)


def default_definition(ecosystem: str, members: list[str], turns: int = DEFAULT_TURNS
                       ) -> dict[str, Any]:
    """A round where the members go about an ordinary day together (used when none is given)."""
    return {
        "name": "living-round", "title": f"A day in {ecosystem}"[:200],
        "setting": (f"An ordinary day in {ecosystem}. Its people go about their lives, meet, "
                    "talk, help or annoy each other, as their natures and their memories of "
                    "earlier days lead them."),
        "turns": turns, "analyst": {"enabled": False},
        "cast": [{"character": name} for name in members],
    }
