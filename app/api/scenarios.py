"""/scenarios: list and validate scenarios, start runs, forks, batches and one-off interactions,
and read a run's graph, transcript, relationships and whole export — all from its event log.
(A scenario given whole, its cast from stored characters: app.api.inline_runs.)

A run, a fork, a batch member and a one-off interaction are each an ordinary task of kind
`scenario` (forks, batch members and interactions have the run they came from as parent).
"""

from __future__ import annotations

import math
from typing import Annotated, Any

from fastapi import APIRouter, Body, HTTPException, Query, Request, status
from pydantic import BaseModel, ConfigDict, Field
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from app.api.deps import CurrentUser, SessionDep, owned_task
from app.api.templates import find, read_body, unprocessable
from app.kinds.scenario import outcomes, replay, store
from app.kinds.scenario.schema import MAX_TURNS, Scenario
from app.models import Task, TaskCreate, TaskKind, User
from app.models.task import Budget, Notify
from app.submit import SubmissionError, submit_task

router = APIRouter(prefix="/scenarios", tags=["scenarios"])
TOKENS_PER_CALL = 3000  # a generous allowance per model call for the default budget


class RunCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    overrides: dict[str, Any] = Field(default_factory=dict)
    seed: int | None = Field(default=None, ge=0, le=2**31)
    complexity: int | None = Field(default=None, ge=1, le=10)
    priority: int = Field(default=0, ge=-100, le=100)
    notify: Notify = Field(default_factory=Notify)
    budget: Budget | None = None


WRITE_BACK = Field(default=False, description=(
    "when the run's stored characters are cast (an ecosystem run): also write what this run "
    "leaves behind — their memories of it and the ecosystem's ties. Off by default: a fork or "
    "a batch is a what-if that the characters do not live through"))


class ForkCreate(RunCreate):
    from_turn: int = Field(ge=0, le=MAX_TURNS)
    write_back: bool = WRITE_BACK


class BatchCreate(RunCreate):
    n: int = Field(default=5, ge=1, le=50)
    seeds: list[int] | None = Field(default=None, max_length=50)
    write_back: bool = WRITE_BACK


class InteractionCreate(BaseModel):
    model_config = ConfigDict(extra="forbid", populate_by_name=True)

    from_: str = Field(alias="from", min_length=1, max_length=60)
    to: str = Field(min_length=1, max_length=60)
    content: str = Field(min_length=1, max_length=4000)
    interaction_type: str = Field(default="chat", max_length=32)
    sentiment: float = Field(default=0.0, ge=-1, le=1)


class RunCreated(BaseModel):
    task_id: int
    status: str
    scenario: str
    parent_id: int | None = None


def estimate(scenario: Scenario) -> tuple[int, Budget]:
    """Complexity from the size of the run, and a budget that fits its model calls."""
    calls = scenario.turn_count * (len(scenario.characters) + 1)
    steps = math.ceil(calls * 1.5) + scenario.turn_count + 4  # room for corrections, analyses
    complexity = max(1, min(10, math.ceil(calls / 25)))
    return complexity, Budget(max_steps=min(steps, 10_000),
                              max_tokens=min(steps * TOKENS_PER_CALL, 100_000_000))


async def submit_run(session: AsyncSession, user: User, scenario: Scenario, body: RunCreate,
                     inputs: dict[str, Any], parent_id: int | None = None,
                     idempotency_key: str | None = None) -> RunCreated:
    """Submit a run of `scenario` as a task of kind scenario (its estimate unless given); a
    repeat with the same `idempotency_key` returns the run the first one started."""
    complexity, budget = estimate(scenario)
    task_in = TaskCreate(
        title=f"Scenario: {scenario.title}"[:300], kind=TaskKind.scenario, scenario=scenario.name,
        complexity=body.complexity or complexity, priority=body.priority, notify=body.notify,
        budget=body.budget or budget, inputs=inputs)
    try:
        task = await submit_task(session=session, task_in=task_in, owner=user, parent_id=parent_id,
                                 idempotency_key=idempotency_key)
    except SubmissionError as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, exc.errors) from exc
    assert task.id is not None
    return RunCreated(task_id=task.id, status=task.status, scenario=scenario.name,
                      parent_id=parent_id)


@router.get("")
async def list_scenarios(session: SessionDep, _user: CurrentUser) -> dict[str, Any]:
    """Every scenario (stored templates shadow shipped files), with the scenario schema."""
    found = {s["name"]: {**s} for s in store.load_scenarios()}
    for row in await store.stored_scenarios(session):
        problems = store.validate(row.body)[1]
        found[row.name] = {"name": row.name, "source": "stored", "data": row.body,
                           "problems": problems}
    data = [{"name": s["name"], "source": s["source"], "title": s["data"].get("title"),
             "characters": [c.get("name") for c in s["data"].get("characters", [])
                            if isinstance(c, dict)],
             "turns": s["data"].get("turns"), "valid": not s["problems"],
             "problems": s["problems"], "definition": s["data"]}
            for s in sorted(found.values(), key=lambda s: s["name"])]
    return {"data": data, "count": len(data), "json_schema": Scenario.model_json_schema()}


@router.post("/validate")
async def validate_scenario(
    request: Request, _user: CurrentUser,
    _body: Annotated[Any, Body(description="A scenario as YAML text or JSON")] = None,
) -> dict[str, Any]:
    """Check a scenario body; `problems` names every one found (empty when valid)."""
    scenario, problems = store.validate(await read_body(request))
    return {"valid": not problems, "problems": problems,
            "turns": scenario.turn_count if scenario else None}


async def _definition(session: AsyncSession, name: str) -> dict[str, Any]:
    try:
        return await store.resolve(session, name)
    except store.ScenarioNotFound:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"no scenario {name!r}") from None


def _checked(name: str, overrides: dict[str, Any], definition: dict[str, Any]) -> Scenario:
    scenario, problems = store.check_request(name, overrides, definition)
    if scenario is None:
        raise unprocessable(problems)
    return scenario


@router.post("/{name}/runs", status_code=status.HTTP_201_CREATED, response_model=RunCreated)
async def start_run(name: str, body: RunCreate, session: SessionDep, user: CurrentUser
                    ) -> RunCreated:
    """Start a run of scenario `name`: a task of kind `scenario`; returns its id."""
    definition = await _definition(session, name)
    scenario = _checked(name, body.overrides, definition)
    return await submit_run(session, user, scenario, body, {
        "overrides": body.overrides, "seed": body.seed, "definition": definition})


async def _run(session: AsyncSession, task_id: int, user: User) -> tuple[Task, list[replay.Event]]:
    task = await owned_task(session, task_id, user)
    if task.kind != TaskKind.scenario:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"task {task_id} is not a scenario run")
    events = await replay.load_events(session, task_id)
    if not any(e["type"] == "scenario_started" for e in events):
        raise HTTPException(status.HTTP_409_CONFLICT, f"run {task_id} has not started yet")
    return task, events


async def _child(session: AsyncSession, user: User, task_id: int, body: RunCreate,
                 extra: dict[str, Any]) -> RunCreated:
    """A run that continues from task `task_id` (a fork, a batch member, an interaction)."""
    parent, events = await _run(session, task_id, user)
    base = replay.started(replay.effective(events))["scenario"]
    done = replay.state_at(events).turn
    if extra.get("from_turn", 0) > done:
        raise unprocessable([{"loc": ["from_turn"],
                              "msg": f"run {task_id} has finished {done} turns"}])
    scenario = _checked(base["name"], body.overrides, base)
    # the parent's stored cast comes along: the characters remember what they did before the
    # parent run (not the parent run itself) and write back only when asked
    carried = {k: v for k, v in ((parent.spec or {}).get("inputs") or {}).items()
               if k in ("stored_cast", "ecosystem") and v}
    inputs = {"overrides": body.overrides, "seed": body.seed, "definition": base,
              "fork_of": task_id, **carried, "write_back": bool(getattr(body, "write_back", False)),
              **extra}
    return await submit_run(session, user, scenario, body, inputs, parent_id=task_id)


@router.post("/runs/{task_id}/fork", status_code=status.HTTP_201_CREATED,
             response_model=RunCreated)
async def fork_run(task_id: int, body: ForkCreate, session: SessionDep, user: CurrentUser
                   ) -> RunCreated:
    """Re-run from turn k with changed overrides: turns 1..k are shared, the rest is new."""
    return await _child(session, user, task_id, body, {"from_turn": body.from_turn})


@router.post("/runs/{task_id}/batch", status_code=status.HTTP_201_CREATED,
             response_model=list[RunCreated])
async def batch_runs(task_id: int, body: BatchCreate, session: SessionDep, user: CurrentUser
                     ) -> list[RunCreated]:
    """N more runs of the same scenario from turn 0, one per seed, to compare outcomes."""
    seeds = body.seeds or list(range(1, body.n + 1))
    return [await _child(session, user, task_id, body.model_copy(update={"seed": s}),
                         {"from_turn": 0, "batch_seed": s}) for s in seeds]


@router.post("/runs/{task_id}/interactions", status_code=status.HTTP_201_CREATED,
             response_model=RunCreated)
async def one_off_interaction(task_id: int, body: InteractionCreate, session: SessionDep,
                              user: CurrentUser) -> RunCreated:
    """One exchange between two characters of a run, played by the same engine as a child."""
    _task, events = await _run(session, task_id, user)
    cast = [c["name"] for c in replay.started(replay.effective(events))["scenario"]["characters"]]
    missing = [{"loc": [key], "msg": f"{who!r} is not in the cast"}
               for key, who in (("from", body.from_), ("to", body.to)) if who not in cast]
    if missing or body.from_ == body.to:
        raise unprocessable(missing or [{"loc": ["to"], "msg": "needs two different characters"}])
    interaction = body.model_dump(by_alias=True)
    return await _child(session, user, task_id, RunCreate(), {"interaction": interaction})


@router.get("/runs/{task_id}/graph")
async def run_graph(task_id: int, session: SessionDep, user: CurrentUser,
                    turn: Annotated[int | None, Query(ge=0, le=MAX_TURNS + 1)] = None
                    ) -> dict[str, Any]:
    """The social graph at the end of `turn` (0: the starting ties; absent: the latest)."""
    _task, events = await _run(session, task_id, user)
    done = replay.state_at(events).turn
    if turn is not None and turn > done:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"turn {turn} not played (last: {done})")
    return replay.graph_at(events, turn)


@router.get("/runs/{task_id}/transcript")
async def run_transcript(task_id: int, session: SessionDep, user: CurrentUser) -> dict[str, Any]:
    task, events = await _run(session, task_id, user)
    state = replay.state_at(events)
    return {"task_id": task_id, "status": task.status, "turns": state.turn,
            "entries": replay.transcript(events), "text": "\n".join(state.lines)}


@router.get("/runs/{task_id}/relationships/{character}")
async def run_relationships(task_id: int, character: str, session: SessionDep,
                            user: CurrentUser) -> dict[str, Any]:
    """One character's ties over time: every change with its turn."""
    _task, events = await _run(session, task_id, user)
    cast = [c["name"] for c in replay.started(replay.effective(events))["scenario"]["characters"]]
    if character not in cast:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"{character!r} is not in the cast")
    return {"character": character, "history": replay.relationships_over_time(events, character)}


@router.get("/runs/{task_id}/outcomes", response_model=outcomes.Outcomes)
async def run_outcomes(task_id: int, session: SessionDep, user: CurrentUser) -> dict[str, Any]:
    """How the batch of run `task_id` turned out: the run itself and every batch member.

    Per objective, how many completed runs the final analysis marked met / not met; per pair of
    the cast, the final strength and trust (n, mean, min, max); conflicts, collaborations,
    interactions and turns per run likewise; and how many runs completed, failed or are still
    going. `per_run` has each run's own figures.
    """
    parent, events = await _run(session, task_id, user)
    children = (await session.exec(
        select(Task).where(Task.parent_id == task_id, Task.kind == TaskKind.scenario)
        .order_by(col(Task.id)))).all()
    members = [c for c in children if ((c.spec or {}).get("inputs") or {}).get("batch_seed")
               is not None]
    rows = [outcomes.run_outcome(parent, events)]
    for member in members:
        assert member.id is not None
        rows.append(outcomes.run_outcome(member, await replay.load_events(session, member.id)))
    return {"task_id": task_id, **outcomes.aggregate(rows), "per_run": rows}


@router.get("/runs/{task_id}/export")
async def export_run(task_id: int, session: SessionDep, user: CurrentUser) -> dict[str, Any]:
    """The whole run as one JSON bundle: definition, transcript, graph per turn, analyses."""
    task, events = await _run(session, task_id, user)
    start = replay.started(replay.effective(events))
    done = replay.state_at(events).turn
    return {
        "task": {"id": task.id, "status": task.status, "parent_id": task.parent_id,
                 "spec": {k: v for k, v in (task.spec or {}).items() if k != "inputs"},
                 "summary": task.summary},
        "scenario": start["scenario"], "seed": start.get("seed"),
        "fork_of": start.get("fork_of"), "from_turn": start.get("from_turn"),
        "transcript": replay.transcript(events),
        "graphs": [replay.graph_at(events, t) for t in range(done + 1)],
        "analyses": replay.analyses(events),
    }


@router.get("/{name}")
async def get_scenario(name: str, session: SessionDep, user: CurrentUser) -> dict[str, Any]:
    return (await find(session, "scenarios", name, user)).model_dump()
