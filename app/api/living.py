"""/ecosystems/{id}/living: an ecosystem that runs in rounds under a daily budget.

    PUT    …/living          set it up (a round's scenario, the time between rounds, the daily
                             budget) and start it; 422 names a bad field as POST /scenarios/runs
                             names a definition's problems (under `body.definition`)
    GET    …/living          where it stands: status, today's spending, the round in flight
    POST   …/living/pause    no new rounds (the one in flight plays to its end)
    POST   …/living/resume   the next round starts at the next sweep (budget allowing)
    DELETE …/living          living mode off

The rounds themselves: app.api.living_rounds (run by the periodic sweep); the budget rules:
app.kinds.scenario.living.
"""

from __future__ import annotations

import uuid
from collections.abc import Awaitable, Callable
from datetime import datetime
from typing import Any

from fastapi import APIRouter, HTTPException, status
from pydantic import BaseModel, ConfigDict, Field
from sqlmodel.ext.asyncio.session import AsyncSession

from app.api.characters import owned_ecosystem
from app.api.deps import CurrentUser, SessionDep
from app.api.living_rounds import check_round, write_living
from app.api.observatory import members_of
from app.core.db import end_read, session_factory
from app.kinds.scenario.living import DEFAULT_INTERVAL_S, DailyBudget, Living, default_definition
from app.models import Ecosystem, User, utcnow

router = APIRouter(prefix="/ecosystems", tags=["characters"])


class LivingSetup(BaseModel):
    model_config = ConfigDict(extra="forbid")

    budget: DailyBudget = Field(description="what a UTC day of rounds may spend")
    definition: dict[str, Any] | None = Field(default=None, description=(
        "the scenario each round plays, casting stored characters (`cast: [{character: "
        "\"Ann\"}]`); omitted: an ordinary day of all the ecosystem's members, 3 turns"))
    interval_s: int = Field(default=DEFAULT_INTERVAL_S, ge=0, le=7 * 24 * 3600,
                            description="seconds from the end of a round to the next one")
    paused: bool = Field(default=False, description="set up without starting rounds yet")


class LivingPublic(BaseModel):
    status: str = Field(description="off, on or paused")
    interval_s: int | None = None
    budget: DailyBudget | None = None
    day: str | None = Field(default=None, description="the UTC day the counters are for")
    spent_usd: float = 0.0
    turns_today: int = 0
    rounds_today: int = 0
    rounds: int = Field(default=0, description="rounds started since living mode was set up")
    round_in_flight: int | None = Field(default=None, description="the playing round's task")
    last_round: int | None = None
    next_round_at: datetime | None = None
    stopped: str | None = Field(default=None, description=(
        "why no round is starting (today's budget spent, or why a round could not start)"))
    definition: dict[str, Any] | None = None


def living_public(eco: Ecosystem) -> LivingPublic:
    if not eco.living:
        return LivingPublic(status=eco.living_status)
    living = Living.model_validate(eco.living)
    return LivingPublic(
        status=eco.living_status, interval_s=living.interval_s, budget=living.budget,
        day=living.day or None, spent_usd=living.spent_usd, turns_today=living.turns,
        rounds_today=living.rounds_today, rounds=living.rounds,
        round_in_flight=eco.living_task_id, last_round=living.last_round,
        next_round_at=eco.living_next_at if eco.living_status == "on" else None,
        stopped=living.stopped, definition=living.definition)


async def _member_names(session: AsyncSession, eco: Ecosystem) -> list[str]:
    return [m["name"] for m in await members_of(session, eco)]


Change = Callable[[Ecosystem], Awaitable[dict[str, Any]]]


async def _fresh(ecosystem_id: int) -> Ecosystem:
    # a session of its own: the request's session may hold an older snapshot of the row
    async with session_factory()() as session:
        eco = await session.get(Ecosystem, ecosystem_id)
    assert eco is not None
    return eco


async def _change(session: AsyncSession, ecosystem_id: int, user: User, change: Change
                  ) -> Ecosystem:
    """Apply `change` (the living columns to set, from the row as it is) with a versioned
    write; a sweep that wrote meanwhile makes it read again and retry."""
    await owned_ecosystem(session, ecosystem_id, user)
    await end_read(session)  # the row is read afresh and written on connections of their own
    for _ in range(5):
        eco = await _fresh(ecosystem_id)
        if await write_living(eco, **await change(eco)):
            return await _fresh(ecosystem_id)
    raise HTTPException(status.HTTP_409_CONFLICT,
                        f"ecosystem {ecosystem_id} kept changing meanwhile; try again")


@router.put("/{ecosystem_id}/living", response_model=LivingPublic)
async def set_living(ecosystem_id: int, body: LivingSetup, session: SessionDep,
                     user: CurrentUser) -> LivingPublic:
    """Set up living mode and start it (unless `paused`): the sweep runs a round, waits
    `interval_s` after it ends, runs the next, until today's budget is spent."""
    eco = await owned_ecosystem(session, ecosystem_id, user)
    definition = body.definition or default_definition(eco.name,
                                                       await _member_names(session, eco))
    living = Living(definition=definition, interval_s=body.interval_s, budget=body.budget,
                    generation=uuid.uuid4().hex[:12])
    # rounds run as the ecosystem's owner (an admin may set up another user's ecosystem)
    owner = user if eco.owner_id == user.id else await session.get(User, eco.owner_id)
    assert owner is not None
    _body, _inputs, scenario, problems = await check_round(session, owner, eco, living)
    if scenario is None:
        if body.definition is None:  # the default round: the ecosystem is what is missing
            problems = [{"loc": ["path", "ecosystem_id"], "type": "value_error", "msg": (
                "a round needs at least two members in the ecosystem, or give a definition")}]
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, problems)

    async def setup(row: Ecosystem) -> dict[str, Any]:
        # today's spending carries over: setting up again does not refill today's budget
        today = Living.model_validate(row.living).rolled(utcnow()) if row.living else None
        kept = today.model_dump(include={"day", "spent_usd", "turns", "rounds_today"}) \
            if today else {}
        return {"living": living.model_copy(update=kept).rolled(utcnow()).model_dump(mode="json"),
                "living_status": "paused" if body.paused else "on", "living_next_at": utcnow()}

    return living_public(await _change(session, ecosystem_id, user, setup))


@router.get("/{ecosystem_id}/living", response_model=LivingPublic)
async def get_living(ecosystem_id: int, session: SessionDep, user: CurrentUser) -> LivingPublic:
    return living_public(await owned_ecosystem(session, ecosystem_id, user))


async def _living(session: AsyncSession, ecosystem_id: int, user: User) -> Ecosystem:
    eco = await owned_ecosystem(session, ecosystem_id, user)
    if eco.living_status == "off" or not eco.living:
        raise HTTPException(status.HTTP_409_CONFLICT, f"ecosystem {ecosystem_id} is not living: "
                            f"set it up first with PUT /ecosystems/{ecosystem_id}/living")
    return eco


@router.post("/{ecosystem_id}/living/pause", response_model=LivingPublic,
             responses={409: {"description": "Living mode is not set up"}})
async def pause_living(ecosystem_id: int, session: SessionDep, user: CurrentUser
                       ) -> LivingPublic:
    """No new rounds; a round in flight plays to its end."""
    await _living(session, ecosystem_id, user)

    async def pause(_row: Ecosystem) -> dict[str, Any]:
        return {"living_status": "paused"}

    return living_public(await _change(session, ecosystem_id, user, pause))


@router.post("/{ecosystem_id}/living/resume", response_model=LivingPublic,
             responses={409: {"description": "Living mode is not set up"}})
async def resume_living(ecosystem_id: int, session: SessionDep, user: CurrentUser
                        ) -> LivingPublic:
    """Rounds again: the next one starts at the next sweep, if today's budget allows."""
    await _living(session, ecosystem_id, user)

    async def resume(row: Ecosystem) -> dict[str, Any]:
        living = Living.model_validate(row.living).model_copy(update={"stopped": None})
        return {"living_status": "on", "living_next_at": utcnow(),
                "living": living.model_dump(mode="json")}

    return living_public(await _change(session, ecosystem_id, user, resume))


@router.delete("/{ecosystem_id}/living", response_model=LivingPublic)
async def stop_living(ecosystem_id: int, session: SessionDep, user: CurrentUser
                      ) -> LivingPublic:
    """Living mode off (a round in flight plays to its end; set it up again to restart)."""
    async def stop(_row: Ecosystem) -> dict[str, Any]:
        return {"living_status": "off", "living_next_at": None}

    return living_public(await _change(session, ecosystem_id, user, stop))
