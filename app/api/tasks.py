"""/tasks: submit, list, read, cancel, pause and resume, follow events, message the agent."""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Header, HTTPException, Query, Request, Response, status
from sqlalchemy import update
from sqlmodel import col, func, select
from sqlmodel.ext.asyncio.session import AsyncSession

from app.api.deps import CurrentUser, SessionDep, owned_task
from app.api.event_page import page_json
from app.api.stream import StreamUser, sse_response, wants_event_stream
from app.core.config import get_settings
from app.core.db import end_read, session_scope
from app.integrations import links
from app.integrations.outbox import notifications_for
from app.models import (
    TERMINAL_VALUES,
    Agent,
    AnswerCreate,
    EventsPublic,
    MessageCreate,
    MessagePublic,
    Task,
    TaskCreate,
    TaskEvent,
    TaskMessage,
    TaskPublic,
    TasksPublic,
    TaskStatus,
    User,
    utcnow,
)
from app.submit import SubmissionError, submit
from app.tasks.enqueue import assign_and_enqueue
from app.tasks.events import append_event, publish
from app.tasks.lifecycle import close_task
from app.tasks.lifecycle import pause_task as pause_now
from app.tasks.lifecycle import resume_task as resume_now

router = APIRouter(prefix="/tasks", tags=["tasks"])


async def to_public(session: AsyncSession, task: Task) -> TaskPublic:
    """The public view of a task: its agent's name, children and notifications included."""
    assert task.id is not None
    agent = await session.get(Agent, task.agent_id) if task.agent_id else None
    children = (await session.exec(
        select(Task.id).where(Task.parent_id == task.id).order_by(col(Task.id))
    )).all()
    return public_view(task, agent.name if agent else None,
                       children=[c for c in children if c is not None],
                       notifications=await notifications_for(session, task.id))


def public_view(task: Task, agent: str | None, *, children: list[int] | None = None,
                notifications: list[dict[str, Any]] | None = None) -> TaskPublic:
    """The public view from what the caller already holds (a task just created has no
    children and no notifications yet)."""
    assert task.id is not None
    data = task.model_dump()
    data.update(
        agent=agent,
        children=children or [],
        usage={"prompt_tokens": task.prompt_tokens, "completion_tokens": task.completion_tokens,
               "cost_usd": round(task.cost_usd, 6), "steps": task.steps},
        resources=task.usage or {},
        notifications=notifications or [],
        links={"dashboard": links.task_page(get_settings(), task.id),
               "report": links.report_link(get_settings(), task.id)},
    )
    return TaskPublic.model_validate(data)


@router.post("", status_code=status.HTTP_201_CREATED, response_model=TaskPublic,
             responses={200: {"description": "A repeat of an earlier request with the same "
                                             "Idempotency-Key: the task it created"}})
async def create_task(
    task_in: TaskCreate, session: SessionDep, user: CurrentUser, response: Response,
    idempotency_key: Annotated[str | None, Header(
        description="Any unique string (e.g. a UUID) a client sends again when it retries: "
                    "the retry gets the task the first request created, never a second one",
        max_length=200)] = None,
) -> TaskPublic:
    """Submit a task; it is assigned to a free agent whose complexity range covers it.

    The task is stored before it is queued: if the broker is down, the answer is still 201 and
    the task is queued when the broker is back."""
    assert user.id is not None
    try:  # the submission ends the read that found the user before it writes
        done = await submit(session=session, task_in=task_in, owner=user,
                            idempotency_key=idempotency_key)
    except SubmissionError as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, exc.errors) from exc
    if done.created:  # as stored by the submission (pending again if the broker refused it)
        return public_view(done.task, done.agent_name)
    response.status_code = status.HTTP_200_OK
    response.headers["Idempotent-Replayed"] = "true"
    # an earlier request's task, as it is now: read in a new transaction (this session's may
    # predate that request's commit)
    await session.commit()
    fresh = await session.get(Task, done.task.id, populate_existing=True)
    return await to_public(session, fresh or done.task)


@router.get("", response_model=TasksPublic)
async def list_tasks(
    session: SessionDep,
    user: CurrentUser,
    status_filter: Annotated[TaskStatus | None, Query(alias="status")] = None,
    cursor: Annotated[int | None, Query(ge=1, le=2**62, description="id to continue below")] = None,
    limit: Annotated[int, Query(ge=1, le=200)] = 50,
) -> TasksPublic:
    """Your tasks, newest first; pass `next_cursor` back as `cursor` for the next page."""
    stmt = select(Task)
    if not user.is_admin:
        stmt = stmt.where(Task.owner_id == user.id)
    if status_filter is not None:
        stmt = stmt.where(Task.status == status_filter.value)
    count = (await session.exec(select(func.count()).select_from(stmt.subquery()))).one()
    if cursor is not None:
        stmt = stmt.where(col(Task.id) < cursor)
    rows = list((await session.exec(stmt.order_by(col(Task.id).desc()).limit(limit + 1))).all())
    more = len(rows) > limit
    rows = rows[:limit]
    data = [await to_public(session, t) for t in rows]
    return TasksPublic(data=data, count=count,
                       next_cursor=str(rows[-1].id) if more and rows else None)


@router.get("/{task_id}", response_model=TaskPublic)
async def get_task(task_id: int, session: SessionDep, user: CurrentUser) -> TaskPublic:
    return await to_public(session, await owned_task(session, task_id, user))


@router.post("/{task_id}/cancel", response_model=TaskPublic)
async def cancel_task(task_id: int, session: SessionDep, user: CurrentUser) -> TaskPublic:
    """Cancel in any state; a running model call is abandoned and the agent freed at once."""
    task = await owned_task(session, task_id, user)
    await end_read(session)  # the refresh below reads afresh, so it sees the cancel
    async with session_scope() as write:
        events = await close_task(write, task_id, TaskStatus.cancelled,
                                  error=f"cancelled by {user.email}")
    publish(events)
    if events:
        await assign_and_enqueue()
    await session.refresh(task)
    return await to_public(session, task)


@router.post("/{task_id}/pause", response_model=TaskPublic,
             responses={409: {"description": "The task is waiting, paused already or ended"}})
async def pause_task(task_id: int, session: SessionDep, user: CurrentUser) -> TaskPublic:
    """Pause now: the worker stops the run and the agent slot is freed; `resume` goes on from
    the last checkpoint (a scenario from its last finished turn, an agent from its last step)."""
    task = await owned_task(session, task_id, user)
    await end_read(session)
    async with session_scope() as write:
        events = await pause_now(write, task_id, by=user.email)
    if not events:
        raise HTTPException(status.HTTP_409_CONFLICT,
                            f"task {task_id} cannot be paused ({task.status})")
    publish(events)
    await assign_and_enqueue()  # the freed slot goes to the next task
    await session.refresh(task)
    return await to_public(session, task)


@router.post("/{task_id}/resume", response_model=TaskPublic,
             responses={409: {"description": "The task is not paused"}})
async def resume_task(task_id: int, session: SessionDep, user: CurrentUser) -> TaskPublic:
    """Put a paused task back in the queue; it goes on where it stopped."""
    task = await owned_task(session, task_id, user)
    await end_read(session)
    async with session_scope() as write:
        events = await resume_now(write, task_id, by=user.email)
    if not events:
        raise HTTPException(status.HTTP_409_CONFLICT, f"task {task_id} is not paused "
                                                      f"({task.status})")
    publish(events)
    await assign_and_enqueue()
    await session.refresh(task)
    return await to_public(session, task)


@router.get("/{task_id}/events", response_model=EventsPublic,
            responses={200: {"content": {"text/event-stream": {}}}})
async def get_events(
    task_id: int,
    request: Request,
    session: SessionDep,
    user: StreamUser,
    after: Annotated[int, Query(ge=0, le=2**62)] = 0,
    limit: Annotated[int, Query(ge=1, le=1000)] = 500,
) -> Any:
    """The task's append-only event log from sequence number `after` on; with
    `Accept: text/event-stream`, a live SSE stream (resumes after `Last-Event-ID`)."""
    if wants_event_stream(request):
        return await sse_response(request, session, task_id, user, after)
    task = await owned_task(session, task_id, user)
    # serialised here, in one call (app.api.event_page); the response model documents it
    return Response(await page_json(session, task_id, after=after, limit=limit,
                                    last_seq=task.last_seq), media_type="application/json")


@router.post("/{task_id}/messages", status_code=status.HTTP_201_CREATED,
             response_model=MessagePublic)
async def post_message(
    task_id: int, body: MessageCreate, session: SessionDep, user: CurrentUser
) -> MessagePublic:
    """Leave a note the running agent sees on its next step."""
    task = await owned_task(session, task_id, user)
    if task.status in TERMINAL_VALUES:
        raise HTTPException(status.HTTP_409_CONFLICT, f"task {task_id} has ended ({task.status})")
    return await add_message(session, task, body, user)


async def add_message(
    session: AsyncSession, task: Task, body: MessageCreate, user: User
) -> MessagePublic:
    assert task.id is not None
    await end_read(session)  # the caller's read, before the write takes a connection
    async with session_scope() as write:
        msg = TaskMessage(task_id=task.id, author=f"user:{user.email}", target=body.target,
                          content=body.content)
        write.add(msg)
        await write.flush()
        event = await append_event(write, task.id, "message", {
            "message_id": msg.id, "author": msg.author, "target": msg.target,
            "content": msg.content[:2000]})
        public = MessagePublic.model_validate(msg, from_attributes=True)
        answered = await _answer_question(write, task.id)
    publish([event, *answered])
    if answered:
        await assign_and_enqueue()
    return public


async def _answer_question(write: AsyncSession, task_id: int) -> list[TaskEvent]:
    """A task waiting for input goes back to pending: the next agent run reads the answer."""
    result = await write.execute(
        update(Task)
        .where(col(Task.id) == task_id, col(Task.status) == TaskStatus.waiting_input.value)
        .values(status=TaskStatus.pending.value, updated_at=utcnow())
        .returning(col(Task.id))
    )
    if result.scalar_one_or_none() is None:
        return []
    return [await append_event(write, task_id, "status",
                               {"status": "pending", "reason": "the question was answered"})]


@router.post("/{task_id}/answer", status_code=status.HTTP_201_CREATED,
             response_model=MessagePublic)
async def answer_question(
    task_id: int, body: AnswerCreate, session: SessionDep, user: CurrentUser
) -> MessagePublic:
    """Answer the question the task is waiting on; the task resumes (409 if it is not waiting).

    What `taskbench answer ID "..."` calls."""
    task = await owned_task(session, task_id, user)
    if task.status != TaskStatus.waiting_input.value:
        raise HTTPException(status.HTTP_409_CONFLICT,
                            f"task {task_id} is not waiting for an answer ({task.status})")
    return await add_message(session, task, MessageCreate(content=body.content), user)


@router.get("/{task_id}/messages", response_model=list[MessagePublic])
async def list_messages(
    task_id: int, session: SessionDep, user: CurrentUser
) -> list[MessagePublic]:
    await owned_task(session, task_id, user)
    rows = (await session.exec(
        select(TaskMessage).where(TaskMessage.task_id == task_id).order_by(col(TaskMessage.id))
    )).all()
    return [MessagePublic.model_validate(r, from_attributes=True) for r in rows]
