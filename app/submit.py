"""Submitting a task: validate it, store it, assign it by the tools it needs and its complexity,
enqueue after the commit."""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from typing import Any

from sqlalchemy.exc import IntegrityError
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from app import kinds
from app.core.config import get_settings
from app.core.db import end_read, session_factory, session_scope
from app.kinds.playbook import playbook_tools
from app.models import Agent, Task, TaskCreate, TaskEvent, TaskKind, User
from app.tasks import routing
from app.tasks.complexity import estimate_complexity
from app.tasks.enqueue import enqueue
from app.tasks.events import insert_events, publish
from app.tasks.scheduling import Assignment, enabled_agents, try_assign


class SubmissionError(Exception):
    """A submission refused; `errors` are FastAPI-style [{loc, msg, type}] for a 422."""

    def __init__(self, errors: list[dict[str, Any]]) -> None:
        super().__init__("; ".join(e["msg"] for e in errors))
        self.errors = errors


def _err(loc: list[str | int], msg: str) -> dict[str, Any]:
    return {"loc": ["body", *loc], "msg": msg, "type": "value_error"}


def _kind_errors(task_in: TaskCreate) -> list[dict[str, Any]]:
    """Ask the task's kind whether it can run what was asked."""
    found = kinds.get(task_in.kind.value).validate(task_in)
    return [{"loc": ["body", *e.get("loc", [])], "msg": e["msg"], "type": "value_error"}
            for e in found]


def _notify_errors(task_in: TaskCreate) -> list[dict[str, Any]]:
    if task_in.notify.webhook and not get_settings().webhook_secret:
        return [_err(["notify", "webhook"], "webhooks are signed, and this server has no"
                     " TASKBENCH_WEBHOOK_SECRET; ask its operator to set one")]
    return []


async def _from_github_issue(task_in: TaskCreate) -> TaskCreate:
    """A task created from a GitHub issue URL takes the issue's title and body, and its
    repository (where the pull request goes) unless `github.repo` names one."""
    issue = task_in.github.issue if task_in.github else None
    if not issue or not task_in.github:
        return task_in
    from app.integrations.github import issue_to_task, parse_issue_url

    try:
        repo = task_in.github.repo or parse_issue_url(issue)[0]
        title, body = ((task_in.title, task_in.description) if task_in.title
                       and task_in.description else await issue_to_task(issue))
    except Exception as exc:  # noqa: BLE001 - any failure is the submitter's bad URL or access
        raise SubmissionError([_err(["github", "issue"], (
            f"could not read the issue: {type(exc).__name__}: {str(exc)[:200]}"))]) from exc
    github = task_in.github.model_copy(update={"repo": repo})
    return task_in.model_copy(update={"title": task_in.title or title[:300],
                                      "description": task_in.description or body[:100_000],
                                      "github": github})


def _needs(task_in: TaskCreate) -> dict[str, str]:
    """The tools the submission's fields imply (app.tasks.routing documents which)."""
    tools: list[str] = []
    if task_in.kind == TaskKind.playbook and task_in.playbook:
        tools = playbook_tools(task_in.playbook)
    github = task_in.github.model_dump(exclude_none=True) if task_in.github else None
    return routing.needs_of(github=github, playbook_tools=tools, playbook=task_in.playbook)


def _title(task_in: TaskCreate) -> str:
    if task_in.title:
        return task_in.title
    if task_in.description:
        return task_in.description.splitlines()[0][:120]
    return f"{task_in.kind.value}: {task_in.playbook or task_in.scenario}"


async def _check_agents(
    session: AsyncSession, task_in: TaskCreate, complexity: int, needs: dict[str, str]
) -> None:
    """Refuse (422) a submission that no enabled agent, or not its pinned agent, can serve."""
    loc: list[str | int] = (["github"] if "open_pull_request" in needs
                            else ["playbook"] if needs else [])
    if task_in.agent:
        agent = (await session.exec(select(Agent).where(Agent.name == task_in.agent))).first()
        if agent is None:
            raise SubmissionError([_err(["agent"], f"no agent named {task_in.agent!r}")])
        if not routing.can_serve(agent, complexity, needs):
            reason = routing.unserved_reason([agent], complexity, needs)
            raise SubmissionError([_err(loc or ["complexity"], f"agent {agent.name}: {reason}")])
        return
    agents = await enabled_agents(session)
    if not any(routing.can_serve(a, complexity, needs) for a in agents):
        reason = routing.unserved_reason(agents, complexity, needs)
        raise SubmissionError([_err(loc or ["complexity"], reason)])


MAX_IDEMPOTENCY_KEY = 200


def request_hash(task_in: TaskCreate) -> str:
    """What a retried submission must repeat exactly to be the same request."""
    return hashlib.sha256(task_in.model_dump_json().encode()).hexdigest()


async def task_for_key(session: AsyncSession, owner_id: int, key: str,
                       task_in: TaskCreate) -> Task | None:
    """The task an earlier submission with this Idempotency-Key created, if any; a key reused
    with a different body is refused (422 naming the header)."""
    if not key or len(key) > MAX_IDEMPOTENCY_KEY or not key.isprintable():
        raise SubmissionError([{"loc": ["header", "Idempotency-Key"], "type": "value_error",
                                "msg": f"1 to {MAX_IDEMPOTENCY_KEY} printable characters"}])
    task = (await session.exec(select(Task).where(
        Task.owner_id == owner_id, Task.idempotency_key == key))).first()
    if task is not None and task.request_hash != request_hash(task_in):
        raise SubmissionError([{"loc": ["header", "Idempotency-Key"], "type": "value_error",
                                "msg": f"this key was used for task {task.id} with a different "
                                       "body; use a new key for a new task"}])
    return task


@dataclass(frozen=True)
class Submission:
    """What a submission gave: the task, and whether this request created it."""

    task: Task
    created: bool  # False: the task an earlier request with the same Idempotency-Key made
    agent_name: str | None = None  # the agent it went to, when one was free and it was queued


async def submit_task(
    *, session: AsyncSession, task_in: TaskCreate, owner: User, parent_id: int | None = None,
    enqueue_now: bool = True, idempotency_key: str | None = None,
) -> Task:
    """Create the task, assign it if an agent is free, commit, then enqueue it (see `submit`)."""
    return (await submit(session=session, task_in=task_in, owner=owner, parent_id=parent_id,
                         enqueue_now=enqueue_now, idempotency_key=idempotency_key)).task


async def submit(
    *, session: AsyncSession, task_in: TaskCreate, owner: User, parent_id: int | None = None,
    enqueue_now: bool = True, idempotency_key: str | None = None,
) -> Submission:
    """Create the task, assign it if an agent is free, commit, then enqueue it.

    With an `idempotency_key`, a repeat of the same request returns the task the first one
    created (also when the two race: the database's unique key decides). The submission reads
    and writes in short transactions of its own, one connection at a time: the caller's
    `session` only has its read ended first (its connection back to the pool), so a request
    or a run that read through it never holds two."""
    assert owner.id is not None
    await end_read(session)
    if idempotency_key is not None:
        async with session_factory()() as read:  # closed before the write takes a connection
            earlier = await task_for_key(read, owner.id, idempotency_key, task_in)
        if earlier is not None:
            return Submission(earlier, created=False)
    hashed = request_hash(task_in) if idempotency_key is not None else None
    task_in = await _from_github_issue(task_in)
    errors = _kind_errors(task_in) + _notify_errors(task_in)
    if errors:
        raise SubmissionError(errors)
    estimated = task_in.complexity is None
    complexity = task_in.complexity or estimate_complexity(task_in.title, task_in.description)
    needs = _needs(task_in)
    try:
        async with session_scope() as write:
            task, assignment, events = await _insert(write, task_in, owner.id, parent_id,
                                                     complexity, estimated, needs)
            if assignment is None:
                # no agent took it now: one that cannot serve it ever is a 422, and the raise
                # rolls the insert back (a free agent taking it already proved it servable)
                await _check_agents(write, task_in, complexity, needs)
            if idempotency_key is not None:
                task.idempotency_key, task.request_hash = idempotency_key, hashed
                write.add(task)
    except IntegrityError:
        if idempotency_key is None:
            raise
        # the same key raced us and won: its task is the answer
        async with session_scope() as read:
            earlier = (await read.exec(select(Task).where(
                Task.owner_id == owner.id, Task.idempotency_key == idempotency_key))).first()
        if earlier is None:
            raise
        return Submission(earlier, created=False)
    publish(events)
    if not assignment or not enqueue_now:
        return Submission(task, created=True)
    if await enqueue([(assignment.task_id, assignment.agent_name)]):
        # the broker did not take it: it is pending again, as stored now
        async with session_factory()() as read:
            return Submission(await read.get(Task, task.id) or task, created=True)
    return Submission(task, created=True, agent_name=assignment.agent_name)


async def _insert(
    session: AsyncSession, task_in: TaskCreate, owner_id: int, parent_id: int | None,
    complexity: int, estimated: bool, needs: dict[str, str],
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
              "inputs": task_in.inputs, routing.NEEDS_KEY: needs,
              **kinds.get(task_in.kind.value).spec(task_in)},
        last_seq=1,  # its `created` event's, inserted below: no sequence bump to ask for
    )
    session.add(task)
    await session.flush()
    assert task.id is not None
    events = await insert_events(session, task.id, 1, [("created", {
        "title": task.title, "kind": task.kind, "complexity": complexity,
        "estimated": estimated, "priority": task.priority, "parent_id": parent_id,
    })])
    # the assignment's ORM UPDATE also sets what it changed on `task` (the session evaluates
    # it): no read back
    assignment = await try_assign(session, task)
    await session.flush()
    return task, assignment, events

