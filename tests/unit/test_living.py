"""The daily budget of a living ecosystem (app.kinds.scenario.living): what stops a round, what
a round is charged, and a new UTC day starting afresh."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest
from pydantic import ValidationError

from app.kinds.scenario.living import DailyBudget, Living, next_day


def test_turns_are_charged_at_the_start_and_never_run_over() -> None:
    living = Living(budget=DailyBudget(turns_per_day=5)).rolled(datetime(2026, 12, 5, tzinfo=UTC))
    assert living.stop(3) is None
    living = living.started(task_id=7, round_turns=3)
    assert (living.turns, living.rounds, living.last_round) == (3, 1, 7)
    # a second round of 3 would make 6 of 5: it does not start
    assert living.stop(3) == "today's budget is spent: 3 of 5 turns (a round plays 3)"
    assert living.stop(2) is None


def test_cost_is_charged_when_a_round_ends_and_caps_the_next() -> None:
    living = Living(budget=DailyBudget(usd_per_day=1.0)).rolled(datetime(2026, 12, 5, tzinfo=UTC))
    assert living.round_cost_cap() == 1.0
    living = living.ended(0.75)
    assert living.stop(1) is None and living.round_cost_cap() == 0.25
    living = living.ended(0.25)
    assert living.stop(1) is not None and "$1.0000 of $1" in living.stop(1)  # type: ignore[operator]
    assert living.round_cost_cap() == 0.0


def test_a_new_utc_day_starts_with_a_whole_budget() -> None:
    day1 = datetime(2026, 12, 5, 23, 59, tzinfo=UTC)
    living = Living(budget=DailyBudget(turns_per_day=2)).rolled(day1).started(1, 2).ended(0.1)
    assert living.stop(2) is not None
    assert living.rolled(day1) is living  # same day: nothing reset
    tomorrow = living.rolled(next_day(day1))
    assert tomorrow.day == "2026-12-06" and tomorrow.turns == 0 and tomorrow.spent_usd == 0
    assert tomorrow.stop(2) is None and tomorrow.rounds == 1  # the lifetime count stays
    assert next_day(day1) == datetime(2026, 12, 6, tzinfo=UTC)


def test_a_living_ecosystem_needs_a_daily_budget() -> None:
    with pytest.raises(ValidationError, match="usd_per_day, turns_per_day or both"):
        DailyBudget()
    with pytest.raises(ValidationError):
        DailyBudget(usd_per_day=-1)
