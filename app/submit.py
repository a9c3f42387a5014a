"""Submitting a task: validate it, store it, assign it by complexity, enqueue after the commit."""

from __future__ import annotations

from typing import Any

from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from app.core.db import session_scope
from app.models import Agent, Task, TaskCreate, TaskEvent, TaskKind, User
from app.tasks.complexity import estimate_complexity
from app.tasks.enqueue import enqueue
from app.tasks.events import append_event, publish
from app.tasks.scheduling import Assignment, covered_ranges, try_assign


class SubmissionError(Exception):
    """A submission refused; `errors` are FastAPI-style [{loc, msg, type}] for a 422."""

    def __init__(self, errors: list[dict[str, Any]]) -> None:
        super().__init__("; ".join(e["msg"] for e in errors))
        self.errors = errors


def _err(loc: list[str | int], msg: str) -> dict[str, Any]:
    return {"loc": ["body", *loc], "msg": msg, "type": "value_error"}


def _kind_errors(task_in: TaskCreate) -> list[dict[str, Any]]:
    """Ask the playbook or scenario engine whether it can run what was asked."""
    if task_in.kind == TaskKind.playbook:
        if not task_in.playbook:
            return [_err(["playbook"], "a playbook task needs `playbook` (its name)")]
        from app.run.playbook import validate_playbook_request

        found = validate_playbook_request(task_in.playbook, task_in.inputs)
    elif task_in.kind == TaskKind.scenario:
        if not task_in.scenario:
            return [_err(["scenario"], "a scenario task needs `scenario` (its name)")]
        from app.run.scenario import validate_scenario_request

        found = validate_scenario_request(task_in.scenario, task_in.inputs.get("overrides") or {},
                                          definition=task_in.inputs.get("definition"))
    else:
        if not (task_in.title or task_in.description):
            return [_err(["title"], "a task needs a title or a description")]
        return []
    return [{"loc": ["body", *e.get("loc", [])], "msg": e["msg"], "type": "value_error"}
            for e in found]


async def _from_github_issue(task_in: TaskCreate) -> TaskCreate:
    """A task created from a GitHub issue URL takes the issue's title and body."""
    issue = task_in.github.issue if task_in.github else None
    if not issue or (task_in.title and task_in.description):
        return task_in
    from app.integrations.github import issue_to_task

    try:
        title, body = await issue_to_task(issue)
    except Exception as exc:  # noqa: BLE001 - any failure is the submitter's bad URL or access
        raise SubmissionError([_err(["github", "issue"], (
            f"could not read the issue: {type(exc).__name__}: {str(exc)[:200]}"))]) from exc
    return task_in.model_copy(update={"title": task_in.title or title[:300],
                                      "description": task_in.description or body[:100_000]})


def _title(task_in: TaskCreate) -> str:
    if task_in.title:
        return task_in.title
    if task_in.description:
        return task_in.description.splitlines()[0][:120]
    return f"{task_in.kind.value}: {task_in.playbook or task_in.scenario}"


async def _check_agents(session: AsyncSession, task_in: TaskCreate, complexity: int) -> None:
    if task_in.agent:
        agent = (await session.exec(select(Agent).where(Agent.name == task_in.agent))).first()
        if agent is None:
            raise SubmissionError([_err(["agent"], f"no agent named {task_in.agent!r}")])
        if not agent.min_complexity <= complexity <= agent.max_complexity:
            raise SubmissionError([_err(["complexity"], (
                f"agent {agent.name} covers {agent.min_complexity}-{agent.max_complexity},"
                f" not {complexity}"))])
        return
    ranges = await covered_ranges(session)
    if not any(lo <= complexity <= hi for lo, hi in ranges):
        covered = ", ".join(f"{lo}-{hi}" for lo, hi in ranges) or "none (no enabled agents)"
        raise SubmissionError([_err(["complexity"], (
            f"no enabled agent covers complexity {complexity}; covered ranges: {covered}"))])


async def submit_task(
    *, session: AsyncSession, task_in: TaskCreate, owner: User, parent_id: int | None = None,
    enqueue_now: bool = True,
) -> Task:
    """Create the task, assign it if an agent is free, commit, then enqueue it."""
    task_in = await _from_github_issue(task_in)
    errors = _kind_errors(task_in)
    if errors:
        raise SubmissionError(errors)
    estimated = task_in.complexity is None
    complexity = task_in.complexity or estimate_complexity(task_in.title, task_in.description)
    await _check_agents(session, task_in, complexity)
    assert owner.id is not None
    async with session_scope() as write:
        task, assignment, events = await _insert(write, task_in, owner.id, parent_id,
                                                 complexity, estimated)
    publish(events)
    if assignment and enqueue_now:
        await enqueue([(assignment.task_id, assignment.agent_name)])
    return task


async def _insert(
    session: AsyncSession, task_in: TaskCreate, owner_id: int, parent_id: int | None,
    complexity: int, estimated: bool,
) -> tuple[Task, Assignment | None, list[TaskEvent]]:
    """Insert the task and its `created` event, and try to assign it, in one transaction."""
    task = Task(
        owner_id=owner_id, parent_id=parent_id, kind=task_in.kind.value, title=_title(task_in),
        description=task_in.description, complexity=complexity,
        complexity_estimated=estimated, priority=task_in.priority,
        pinned_agent=task_in.agent, budget=task_in.budget.model_dump(exclude_none=True),
        notify=task_in.notify.model_dump(mode="json"),
        github=task_in.github.model_dump(exclude_none=True) if task_in.github else None,
        spec={"playbook": task_in.playbook, "scenario": task_in.scenario,
              "inputs": task_in.inputs, **_scenario_spec(task_in)},
    )
    session.add(task)
    await session.flush()
    assert task.id is not None
    events = [await append_event(session, task.id, "created", {
        "title": task.title, "kind": task.kind, "complexity": complexity,
        "estimated": estimated, "priority": task.priority, "parent_id": parent_id,
    })]
    assignment = await try_assign(session, task)
    await session.flush()
    await session.refresh(task)
    return task, assignment, events


def _scenario_spec(task_in: TaskCreate) -> dict[str, Any]:
    if task_in.kind != TaskKind.scenario:
        return {}
    inputs = task_in.inputs
    return {"overrides": inputs.get("overrides") or {}, "seed": inputs.get("seed"),
            "fork_of": inputs.get("fork_of"), "from_turn": inputs.get("from_turn")}
