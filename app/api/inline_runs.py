"""/scenarios/runs: run a scenario given whole, casting stored characters by name, or only
check such a run (the dashboard's director validates as one types).

Both answer the same problems, named the same way: casting problems (app.api.cast), then the
definition's (under `body.definition`; a cast character's at its `cast` entry), then the
overrides' (under `body.overrides`).
"""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, HTTPException, status
from pydantic import BaseModel, Field
from sqlmodel.ext.asyncio.session import AsyncSession

from app.api import cast
from app.api.deps import CurrentUser, SessionDep
from app.api.scenarios import RunCreate, RunCreated, estimate, submit_run
from app.kinds.scenario import store
from app.kinds.scenario.schema import Problem, Scenario, validate
from app.models import User
from app.models.task import Budget

router = APIRouter(prefix="/scenarios", tags=["scenarios"])


class InlineRunCreate(RunCreate):
    definition: dict[str, Any] = Field(description=(
        "A whole scenario; `cast: [{character: \"Ann\"}]` casts your stored characters by "
        "name (beside or instead of inline `characters`)"))
    ecosystem: int | None = Field(default=None, ge=1, le=2**62, description=(
        "An ecosystem of yours: its current relationships are the run's starting ties, and "
        "the run writes its ties back when it ends"))


class RunCheck(BaseModel):
    """What POST /scenarios/runs would say of a body, without starting anything."""

    valid: bool
    problems: list[dict[str, Any]] = Field(description=(
        "the 422's `detail` that POST /scenarios/runs would answer: {loc, msg, type}, loc "
        "from `body` (a cast character's problem points at its `cast` entry); empty if valid"))
    turns: int | None = None
    characters: list[str] = Field(default_factory=list, description="the cast, in order")
    complexity: int | None = Field(default=None, description="the estimate the run would get")
    budget: Budget | None = None


async def check_inline(session: AsyncSession, user: User, body: InlineRunCreate
                  ) -> tuple[dict[str, Any], dict[str, int], Scenario | None, list[Problem]]:
    """The run POST /scenarios/runs would start (the definition with its cast inline, the
    stored cast, the scenario), or every problem found, located as its 422 names them."""
    definition, stored, problems = await cast.check(session, user, body.definition,
                                                    body.ecosystem)
    scenario, found = validate(definition)
    if problems:  # a cast entry left out: the cast's size is not a problem of its own
        found = [p for p in found if p["loc"] != ["characters"]]
    problems += [{"loc": ["body", "definition", *cast.definition_loc(body.definition, p["loc"])],
                  "msg": p["msg"], "type": "value_error"} for p in found]
    if scenario is None or problems:
        return definition, stored, None, problems
    scenario, found = store.check_request(scenario.name, body.overrides, definition)
    return definition, stored, scenario, [
        {"loc": ["body", *p["loc"]], "msg": p["msg"], "type": "value_error"} for p in found]


@router.post("/runs", status_code=status.HTTP_201_CREATED, response_model=RunCreated)
async def start_inline_run(body: InlineRunCreate, session: SessionDep, user: CurrentUser
                           ) -> RunCreated:
    """Run a scenario given whole, casting stored characters by name; returns the task id."""
    definition, stored, scenario, problems = await check_inline(session, user, body)
    if scenario is None:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, problems)
    return await submit_run(session, user, scenario, body, {
        "overrides": body.overrides, "seed": body.seed, "definition": definition,
        "stored_cast": stored, "ecosystem": body.ecosystem})


@router.post("/runs/validate", response_model=RunCheck)
async def validate_run(body: InlineRunCreate, session: SessionDep, user: CurrentUser
                       ) -> RunCheck:
    """Check a POST /scenarios/runs body without starting a run: the same problems, named the
    same way, as the 422 the start would answer (the dashboard's director validates live)."""
    _definition, _stored, scenario, problems = await check_inline(session, user, body)
    if scenario is None:
        return RunCheck(valid=False, problems=problems)
    complexity, budget = estimate(scenario)
    return RunCheck(valid=True, problems=[], turns=scenario.turn_count,
                    characters=scenario.cast, complexity=body.complexity or complexity,
                    budget=body.budget or budget)
