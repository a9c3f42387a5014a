"""The rounds of living ecosystems, as the periodic sweep drives them (app.ops.sweeper).

    living_rounds()   settle the rounds that ended (charge their cost, schedule the next one
                      `interval_s` later), then start the rounds that are due — each an
                      ordinary scenario task through POST /scenarios/runs' own path (casting,
                      validation, submission), with the ecosystem's ties in and written back

Every process sweeps, so each write is conditional on the ecosystem's `living_version` being
what the sweep read (a round is recorded once, an ended one settled once, an API change never
overwritten), and two sweeps starting the same round submit it with the same Idempotency-Key,
so they get one task (the loser's write fails; the next sweep finds the round recorded).
A round that can no longer start (its scenario became invalid, no agent serves it), and
MAX_FAILURES rounds in a row that failed, pause the ecosystem, saying why in `living.stopped`.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Any

from fastapi import HTTPException
from sqlalchemy import update
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from app.api.inline_runs import InlineRunCreate, check_inline
from app.api.scenarios import estimate, submit_run
from app.core.db import end_read, session_factory, session_scope
from app.kinds.scenario.living import Living, next_day
from app.kinds.scenario.schema import Problem, Scenario
from app.models import TERMINAL_VALUES, Ecosystem, Task, TaskStatus, User, living_due, utcnow

log = logging.getLogger(__name__)


async def check_round(session: AsyncSession, user: User, eco: Ecosystem, living: Living
                      ) -> tuple[InlineRunCreate, dict[str, Any], Scenario | None, list[Problem]]:
    """The run a round of `eco` would start, or its problems (located as in PUT …/living)."""
    body = InlineRunCreate(definition=living.definition, ecosystem=eco.id)
    definition, stored, scenario, problems = await check_inline(session, user, body)
    return body, {"definition": definition, "stored_cast": stored}, scenario, problems


async def write_living(eco: Ecosystem, **values: Any) -> bool:
    """Change `eco`'s living columns if nobody has since it was read (False: someone did)."""
    async with session_scope() as session:
        done = await session.execute(
            update(Ecosystem).where(col(Ecosystem.id) == eco.id,
                                    col(Ecosystem.living_version) == eco.living_version)
            .values(updated_at=utcnow(), living_version=eco.living_version + 1, **values))
    return bool(getattr(done, "rowcount", 0))


async def _settle(session: AsyncSession, eco: Ecosystem, now: datetime) -> None:
    task = await session.get(Task, eco.living_task_id)
    if task is not None and task.status not in TERMINAL_VALUES:
        return  # still playing
    await end_read(session)  # the sweep holds one connection at a time, as a request does
    ok = task is not None and task.status == TaskStatus.completed
    living = Living.model_validate(eco.living).ended(task.cost_usd if task else 0.0, ok)
    paused: dict[str, Any] = {}
    if living.failing():
        reason = (f"{living.failures} rounds in a row failed; the last (task "
                  f"{eco.living_task_id}): {(task.error if task else None) or 'no result'}")[:500]
        log.warning("living ecosystem %s paused: %s", eco.id, reason)
        living = living.model_copy(update={"stopped": reason, "failures": 0})
        paused = {"living_status": "paused"}
    await write_living(eco, living_task_id=None, living=living.model_dump(mode="json"),
                       living_next_at=now + timedelta(seconds=living.interval_s), **paused)


def _problems_text(problems: list[Problem]) -> str:
    return "; ".join(f"{'.'.join(map(str, p['loc']))}: {p['msg']}" for p in problems)[:500]


async def _start(session: AsyncSession, eco: Ecosystem, now: datetime) -> bool:
    """Start `eco`'s due round; False when none started (budget spent, or it cannot start)."""
    living = Living.model_validate(eco.living).rolled(now)
    user = await session.get(User, eco.owner_id)
    assert user is not None
    body, inputs, scenario, problems = await check_round(session, user, eco, living)
    await end_read(session)  # before any write below (submit_run's too)
    if scenario is None:
        return await _pause(eco, living, f"the round cannot start: {_problems_text(problems)}")
    reason = living.stop(scenario.turn_count)
    if reason is not None:  # look again when the day's budget is whole
        spent = living.model_copy(update={"stopped": reason})
        await write_living(eco, living=spent.model_dump(mode="json"), living_next_at=next_day(now))
        return False
    budget = estimate(scenario)[1].model_copy(update={"max_cost_usd": living.round_cost_cap()})
    body = body.model_copy(update={"budget": budget})
    assert eco.id is not None
    key = f"living:{eco.id}:{living.generation}:{living.rounds + 1}"
    try:
        created = await submit_run(session, user, scenario, body, {
            **inputs, "seed": None, "overrides": {}, "ecosystem": eco.id,
            "living_round": living.rounds + 1}, idempotency_key=key)
    except HTTPException as exc:
        detail = exc.detail if isinstance(exc.detail, list) else [
            {"loc": [], "msg": str(exc.detail)}]
        return await _pause(eco, living, f"the round was refused: {_problems_text(detail)}")
    started = living.started(created.task_id, scenario.turn_count)
    return await write_living(eco, living_task_id=created.task_id, living_next_at=None,
                              living=started.model_dump(mode="json"))


async def _pause(eco: Ecosystem, living: Living, reason: str) -> bool:
    log.warning("living ecosystem %s paused: %s", eco.id, reason)
    stopped = living.model_copy(update={"stopped": reason})
    await write_living(eco, living_status="paused", living=stopped.model_dump(mode="json"))
    return False


async def living_rounds(now: datetime | None = None) -> int:
    """Settle ended rounds and start due ones; returns how many rounds started."""
    now = now or utcnow()
    started = 0
    async with session_factory()() as session:
        rows = list((await session.exec(select(Ecosystem).where(living_due(now))
                                        .limit(100))).all())
        for eco in rows:
            if eco.living_task_id is not None:
                await _settle(session, eco, now)
        for eco in rows:
            if eco.living_task_id is None and eco.living_status == "on":
                started += await _start(session, eco, now)
    return started
