"""The dashboard: server-rendered pages at the root (/login, /tasks, /agents, /workers, …).

Pages read through the same functions as the REST API; forms post here with a CSRF token;
live parts (timeline, scenario graph) use SSE with a short-lived token from the page.
"""

from __future__ import annotations

from typing import Annotated, Any
from urllib.parse import quote, urlencode

from fastapi import APIRouter, Form, HTTPException, Query, Request
from fastapi.responses import RedirectResponse, Response
from pydantic import ValidationError
from sqlmodel import col, select

from app.api import artifacts as files_api
from app.api import tasks as tasks_api
from app.api.auth import api_key_row, token_for
from app.api.deps import SessionDep, owned_task
from app.api.participants import run_cast
from app.auth.tokens import SESSION_AUDIENCE, mint
from app.core.config import get_settings
from app.core.db import end_read, session_scope
from app.kinds.scenario import replay
from app.models import (
    RUNNING_VALUES,
    TERMINAL_VALUES,
    Agent,
    AgentStatus,
    AnswerCreate,
    MessageCreate,
    Task,
    TaskCreate,
    TaskStatus,
    WorkerNode,
)
from app.models import ApiKey as ApiKeyRow
from app.submit import SubmissionError, submit_task
from app.tasks.events import list_events
from app.web.session import (
    LOGIN_CSRF_COOKIE,
    SESSION_COOKIE,
    check_csrf,
    cookie_flags,
    csrf_for,
    new_login_nonce,
    page_token,
    page_user,
    render,
    safe_next,
)

router = APIRouter(tags=["dashboard"], include_in_schema=False)
Csrf = Annotated[str, Form(max_length=100)]


def _see(url: str) -> RedirectResponse:
    return RedirectResponse(url, status_code=303)


@router.get("/")
async def home() -> RedirectResponse:
    return _see("/tasks")


@router.get("/login")
async def login_page(request: Request, error: str = "", next: str = "") -> Response:
    nonce = new_login_nonce()
    page = render(request, "login.html", {"login_csrf": csrf_for(nonce), "error": error,
                                          "next": safe_next(next)})
    page.set_cookie(LOGIN_CSRF_COOKIE, nonce, max_age=600, **cookie_flags(request))
    return page


@router.post("/login")
async def login(request: Request, session: SessionDep,
                api_key: Annotated[str, Form(max_length=200)], csrf: Csrf,
                next: Annotated[str, Form(max_length=500)] = "") -> Response:
    """Trade an API key for a signed session cookie (the key itself is not stored), then go
    back to the page that asked for it (a local path only)."""
    check_csrf(request, LOGIN_CSRF_COOKIE, csrf)
    back = safe_next(next)
    try:
        row = await api_key_row(session, api_key.strip())
    except HTTPException:
        query = {"error": "That API key was not accepted", **({"next": back} if back else {})}
        return _see(f"/login?{urlencode(query)}")
    assert row.id is not None
    ttl = get_settings().session_ttl_s
    cookie = mint(user_id=row.user_id, key_id=row.id, audience=SESSION_AUDIENCE, ttl_s=ttl)
    done = _see(back or "/tasks")
    done.set_cookie(SESSION_COOKIE, cookie, max_age=ttl, **cookie_flags(request))
    done.delete_cookie(LOGIN_CSRF_COOKIE, path="/")
    return done


@router.post("/logout")
async def logout(request: Request, csrf: Csrf) -> Response:
    check_csrf(request, SESSION_COOKIE, csrf)
    done = _see("/login")
    done.delete_cookie(SESSION_COOKIE, path="/")
    return done


@router.get("/session/token")
async def session_token(request: Request, session: SessionDep) -> dict[str, Any]:
    """A fresh API token for the page's scripts (streams reconnect with it)."""
    _user, key_id = await page_user(request, session)
    row = await session.get(ApiKeyRow, key_id)
    assert row is not None
    return token_for(row).model_dump()


@router.get("/tasks")
async def tasks_page(request: Request, session: SessionDep,
                     status: Annotated[TaskStatus | None, Query()] = None,
                     error: str = "") -> Response:
    user, _ = await page_user(request, session)
    listed = await tasks_api.list_tasks(session, user, status, None, 100)
    agents = (await session.exec(select(Agent.name).order_by(col(Agent.name)))).all()
    waiting = await tasks_api.list_tasks(session, user, TaskStatus.waiting_input, None, 50)
    return render(request, "tasks.html", {
        "user": user, "tasks": listed.data, "count": listed.count, "status": status,
        "statuses": [s.value for s in TaskStatus], "agents": agents, "error": error,
        "inbox": [(t, (t.spec.get("wait") or {}).get("question") or "") for t in waiting.data]})


@router.post("/tasks")
async def submit(request: Request, session: SessionDep, csrf: Csrf,
                 title: Annotated[str, Form(max_length=300)] = "",
                 description: Annotated[str, Form(max_length=100_000)] = "",
                 kind: Annotated[str, Form(max_length=16)] = "agent",
                 complexity: Annotated[str, Form(max_length=3)] = "",
                 playbook: Annotated[str, Form(max_length=100)] = "",
                 scenario: Annotated[str, Form(max_length=100)] = "") -> Response:
    user, _ = await page_user(request, session)
    check_csrf(request, SESSION_COOKIE, csrf)
    fields: dict[str, Any] = {"title": title, "description": description, "kind": kind,
                              "playbook": playbook or None, "scenario": scenario or None}
    if complexity.strip():
        fields["complexity"] = complexity.strip()
    try:
        task = await submit_task(session=session, task_in=TaskCreate(**fields), owner=user)
    except (ValidationError, SubmissionError) as exc:
        first = exc.errors()[0] if isinstance(exc, ValidationError) else exc.errors[0]
        return _see("/tasks?error=" + quote(str(first.get("msg", "invalid task"))[:200]))
    return _see(f"/scenarios/runs/{task.id}" if task.kind == "scenario" else f"/tasks/{task.id}")


@router.get("/tasks/{task_id}")
async def task_page(task_id: int, request: Request, session: SessionDep) -> Response:
    user, key_id = await page_user(request, session)
    task = await owned_task(session, task_id, user)
    public = await tasks_api.to_public(session, task)
    events = await list_events(session, task_id, limit=1000)
    files = await files_api.list_artifacts(task_id, session, user)
    pr = next((e.data.get("url") for e in reversed(events)
               if e.type in ("pull_request", "pr_opened") and e.data.get("url")), None)
    return render(request, "task.html", {
        "user": user, "task": public, "events": events, "files": files, "pr_url": pr,
        "token": await page_token(session, key_id), "ended": task.status in TERMINAL_VALUES})



@router.get("/tasks/{task_id}/files/{path:path}")
async def task_file(task_id: int, path: str, request: Request, session: SessionDep) -> Any:
    user, _ = await page_user(request, session)
    return await files_api.download_artifact(task_id, path, session, user)


@router.get("/tasks/{task_id}/report.pdf")
async def task_report(task_id: int, request: Request, session: SessionDep) -> Any:
    user, _ = await page_user(request, session)
    return await files_api.report_pdf(task_id, session, user)


@router.post("/tasks/{task_id}/message")
async def message(task_id: int, request: Request, session: SessionDep, csrf: Csrf,
                  content: Annotated[str, Form(min_length=1, max_length=20_000)]) -> Response:
    user, _ = await page_user(request, session)
    check_csrf(request, SESSION_COOKIE, csrf)
    await tasks_api.post_message(task_id, MessageCreate(content=content), session, user)
    return _see(f"/tasks/{task_id}")


@router.post("/tasks/{task_id}/answer")
async def answer(task_id: int, request: Request, session: SessionDep, csrf: Csrf,
                 content: Annotated[str, Form(min_length=1, max_length=20_000)]) -> Response:
    """Answer the question the task waits on (from the inbox or the task page)."""
    user, _ = await page_user(request, session)
    check_csrf(request, SESSION_COOKIE, csrf)
    await tasks_api.answer_question(task_id, AnswerCreate(content=content), session, user)
    return _see(f"/tasks/{task_id}")


@router.post("/tasks/{task_id}/cancel")
async def cancel(task_id: int, request: Request, session: SessionDep, csrf: Csrf) -> Response:
    user, _ = await page_user(request, session)
    check_csrf(request, SESSION_COOKIE, csrf)
    await tasks_api.cancel_task(task_id, session, user)
    return _see(f"/tasks/{task_id}")


@router.get("/agents")
async def agents_page(request: Request, session: SessionDep) -> Response:
    user, _ = await page_user(request, session)
    agents = (await session.exec(select(Agent).order_by(col(Agent.name)))).all()
    rows = []
    for agent in agents:
        done = (await session.exec(select(Task).where(
            Task.agent_id == agent.id, col(Task.finished_at).is_not(None)))).all()
        current = [t.id for t in (await session.exec(select(Task).where(
            Task.agent_id == agent.id, col(Task.status).in_(RUNNING_VALUES)
        ))).all()]
        durations = [(t.finished_at - (t.started_at or t.created_at)).total_seconds()
                     for t in done if t.finished_at and (t.started_at or t.created_at)]
        rows.append({"agent": agent, "current": current, "done": len(done),
                     "avg_cost": sum(t.cost_usd for t in done) / len(done) if done else 0.0,
                     "avg_s": sum(durations) / len(durations) if durations else 0.0})
    return render(request, "agents.html", {"user": user, "rows": rows})


@router.post("/agents/{agent_id}/status")
async def agent_status(agent_id: int, request: Request, session: SessionDep, csrf: Csrf,
                       enabled: Annotated[str, Form(max_length=5)]) -> Response:
    """Enable or disable an agent (admins)."""
    user, _ = await page_user(request, session)
    check_csrf(request, SESSION_COOKIE, csrf)
    if not user.is_admin:
        raise HTTPException(403, "admin only")
    await end_read(session)
    async with session_scope() as write:
        agent = await write.get(Agent, agent_id)
        if agent is None:
            raise HTTPException(404, "no such agent")
        busy = AgentStatus.busy if agent.active_tasks else AgentStatus.available
        agent.status = busy if enabled == "1" else AgentStatus.disabled
        write.add(agent)
    return _see("/agents")


@router.get("/workers")
async def workers_page(request: Request, session: SessionDep) -> Response:
    user, _ = await page_user(request, session)
    workers = (await session.exec(select(WorkerNode).order_by(
        col(WorkerNode.heartbeat_at).desc()))).all()
    return render(request, "workers.html", {"user": user, "workers": workers})


@router.get("/scenarios/runs/{task_id}")
async def scenario_page(task_id: int, request: Request, session: SessionDep) -> Response:
    user, key_id = await page_user(request, session)
    task = await owned_task(session, task_id, user)
    cast = run_cast(task, await replay.load_events(session, task_id))
    ecosystem = ((task.spec or {}).get("inputs") or {}).get("ecosystem")
    return render(request, "scenario.html", {
        "user": user, "task": task, "token": await page_token(session, key_id), "cast": cast,
        "ended": task.status in TERMINAL_VALUES,
        "ecosystem": ecosystem if isinstance(ecosystem, int) else None})
