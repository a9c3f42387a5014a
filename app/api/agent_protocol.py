"""The Agent Protocol face (/ap/v1/agent/tasks…) mapped onto Taskbench tasks.

    AP task      ─ a Taskbench task (id as a string; `input` is the description)
    AP step      ─ one event of the task's log (step_id = seq, name = event type)
    POST step    ─ with input: a message to the agent; without: wait for the next event
    AP artifact  ─ a file in output/ (agent_created) or input/ (uploaded); id = its path, encoded;
                   `relative_path` its folder there ('' at the top), `created_at` its mtime

Clients that cannot send an Authorization header (agbenchmark) can be let in by URL instead:
see app.api.ap_key_url (off by default).
"""

from __future__ import annotations

import asyncio
import base64
import binascii
import itertools
from collections import OrderedDict
from datetime import datetime
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, File, Form, HTTPException, Query, UploadFile, status
from fastapi.responses import StreamingResponse
from pydantic import ValidationError
from sqlmodel import col, func, select
from sqlmodel.ext.asyncio.session import AsyncSession

from app.api import artifacts as files_api
from app.api.agent_protocol_schemas import (
    APTask,
    Artifact,
    ArtifactListResponse,
    Pagination,
    Step,
    StepListResponse,
    StepRequestBody,
    TaskListResponse,
    TaskRequestBody,
)
from app.api.deps import CurrentUser, SessionDep, owned_task
from app.api.live import follow
from app.api.openapi import ENDED, binary
from app.api.tasks import add_message
from app.core.db import end_read
from app.models import TERMINAL_VALUES, MessageCreate, Task, TaskCreate, TaskEvent
from app.sandbox import fs
from app.sandbox.workspace import PathRefused
from app.submit import SubmissionError, submit_task
from app.tasks.events import list_events

router = APIRouter(prefix="/ap/v1/agent", tags=["agent-protocol"])
TASK_FIELDS = {"title", "kind", "complexity", "priority", "budget", "notify", "github",
               "playbook", "scenario", "inputs", "agent"}


Page = Annotated[int, Query(ge=1, le=100_000)]
PageSize = Annotated[int, Query(ge=1, le=100)]


def _pagination(total: int, page: int, size: int) -> Pagination:
    return Pagination(total_items=total, total_pages=max(1, -(-total // size)),
                      current_page=page, page_size=size)


def _task_id(raw: str) -> int:
    if not (raw.isascii() and raw.isdigit()) or len(raw) > 18:  # "²".isdigit() is true
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"task {raw} not found")
    return int(raw)


def _ap_task(task: Task) -> APTask:
    extra = {"title": task.title, "status": task.status, "kind": task.kind,
             "complexity": task.complexity, "summary": task.summary, "error": task.error}
    return APTask(task_id=str(task.id), input=task.description or task.title,
                  additional_input=extra)


def _output_text(event: TaskEvent) -> str:
    for key in ("summary", "content", "status", "phase", "error", "tool"):
        value = event.data.get(key)
        if isinstance(value, str) and value:
            return value
    return event.type


def _step(task: Task, event: TaskEvent) -> Step:
    ended = task.status in TERMINAL_VALUES
    step_input = event.data.get("content") if event.type == "message" else None
    return Step(task_id=str(task.id), step_id=str(event.seq), name=event.type,
                status="completed", input=step_input, output=_output_text(event),
                additional_output=event.data, is_last=ended and event.seq == task.last_seq)


@router.post("/tasks", response_model=APTask)
async def create_agent_task(body: TaskRequestBody, session: SessionDep,
                            user: CurrentUser) -> APTask:
    """Submit a task: `input` is what to do; `additional_input` takes TaskCreate fields."""
    text = (body.input or "").strip()
    extra = {k: v for k, v in (body.additional_input or {}).items() if k in TASK_FIELDS}
    extra.setdefault("title", text.splitlines()[0][:300] if text else "Agent Protocol task")
    try:
        task_in = TaskCreate(description=text, **extra)
        task = await submit_task(session=session, task_in=task_in, owner=user)
    except ValidationError as exc:
        raise HTTPException(422, exc.errors(include_url=False, include_context=False)) from exc
    except SubmissionError as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, exc.errors) from exc
    return _ap_task(task)


@router.get("/tasks", response_model=TaskListResponse)
async def list_agent_tasks(session: SessionDep, user: CurrentUser, current_page: Page = 1,
                           page_size: PageSize = 10) -> TaskListResponse:
    stmt = select(Task)
    if not user.is_admin:
        stmt = stmt.where(Task.owner_id == user.id)
    total = (await session.exec(select(func.count()).select_from(stmt.subquery()))).one()
    rows = (await session.exec(stmt.order_by(col(Task.id).desc())
                               .offset((current_page - 1) * page_size).limit(page_size))).all()
    return TaskListResponse(tasks=[_ap_task(t) for t in rows],
                            pagination=_pagination(total, current_page, page_size))


@router.get("/tasks/{task_id}", response_model=APTask)
async def get_agent_task(task_id: str, session: SessionDep, user: CurrentUser) -> APTask:
    task = await owned_task(session, _task_id(task_id), user)
    found = _ap_task(task)
    found.artifacts = await _artifacts(task, session, user)
    return found


@router.get("/tasks/{task_id}/steps", response_model=StepListResponse)
async def list_agent_task_steps(task_id: str, session: SessionDep, user: CurrentUser,
                                current_page: Page = 1, page_size: PageSize = 10,
                                ) -> StepListResponse:
    task = await owned_task(session, _task_id(task_id), user)
    after = (current_page - 1) * page_size
    rows = await list_events(session, task.id or 0, after=after, limit=page_size)
    return StepListResponse(steps=[_step(task, e) for e in rows],
                            pagination=_pagination(task.last_seq, current_page, page_size))


@router.post("/tasks/{task_id}/steps", response_model=Step, responses=ENDED)
async def execute_agent_task_step(task_id: str, session: SessionDep, user: CurrentUser,
                                  body: StepRequestBody | None = None) -> Step:
    """With `input`: a message the agent reads on its next step. Without: the next event this
    client has not been given yet (waiting up to `additional_input.wait_s`, default 10 s, for
    one), so stepping walks the log once, in order; `is_last` on the last event of an ended task."""
    task = await owned_task(session, _task_id(task_id), user)
    body = body or StepRequestBody()
    if body.input:
        if task.status in TERMINAL_VALUES:
            raise HTTPException(status.HTTP_409_CONFLICT, f"task {task_id} has ended")
        await add_message(session, task, MessageCreate(content=body.input), user)
        await session.rollback()  # end the read snapshot: the message was committed elsewhere
        await session.refresh(task)
        event = (await session.exec(select(TaskEvent).where(
            TaskEvent.task_id == task.id, TaskEvent.type == "message")
            .order_by(col(TaskEvent.seq).desc()))).first()
        assert event is not None
        return _step(task, event)
    extra = body.additional_input or {}
    wait_s = min(max(_number(extra.get("wait_s"), 10.0), 0.0), 30.0)
    after = extra.get("after")
    cursor = int(after) if isinstance(after, int) and after >= 0 else None
    return await _next_step(session, task, user.id or 0, wait_s, cursor)


def _number(value: Any, default: float) -> float:
    return float(value) if isinstance(value, int | float) else default


# The last step each (task, user) was given by POST …/steps without input, so that stepping
# reports every event once, in order. Per API process; `additional_input.after` (a step_id)
# gives a client its own cursor instead.
_cursors: OrderedDict[tuple[int, str, int], int] = OrderedDict()
MAX_CURSORS = 10_000


async def _next_step(session: AsyncSession, task: Task, user_id: int, wait_s: float,
                     after: int | None) -> Step:
    """The first event after the cursor, waiting up to `wait_s` for one to happen."""
    assert task.id is not None
    key = (task.id, str(task.created_at), user_id)  # the creation time: ids of a reset database
    cursor = after if after is not None else _cursors.get(key, 0)
    ended = task.status in TERMINAL_VALUES
    # no connection held through the wait (its reads take their own), and a fresh snapshot
    # after it: the events came from other transactions
    await end_read(session)
    if not ended and wait_s > 0:
        await _wait_for_event(task.id, cursor, wait_s)  # returns at once if there is one
    await session.refresh(task)
    found = await list_events(session, task.id, after=cursor, limit=1)
    if not found and task.status in TERMINAL_VALUES and task.last_seq:
        found = await list_events(session, task.id, after=task.last_seq - 1, limit=1)
    if not found:
        return Step(task_id=str(task.id), step_id=str(cursor), name="waiting",
                    status="running", output=task.status)
    _cursors[key] = found[0].seq
    _cursors.move_to_end(key)
    while len(_cursors) > MAX_CURSORS:
        _cursors.popitem(last=False)
    return _step(task, found[0])


async def _wait_for_event(task_id: int, after: int, wait_s: float) -> None:
    stream = follow(task_id, after=after, idle_s=wait_s)
    try:
        await asyncio.wait_for(anext(stream), wait_s)
    except TimeoutError:
        pass
    finally:
        await stream.aclose()


@router.get("/tasks/{task_id}/steps/{step_id}", response_model=Step)
async def get_agent_task_step(task_id: str, step_id: str, session: SessionDep,
                              user: CurrentUser) -> Step:
    task = await owned_task(session, _task_id(task_id), user)
    seq = int(step_id) if step_id.isdigit() and len(step_id) < 18 else -1
    event = (await session.exec(select(TaskEvent).where(
        TaskEvent.task_id == task.id, TaskEvent.seq == seq))).first()
    if event is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"step {step_id} not found")
    return _step(task, event)


def _encode(path: str) -> str:
    return base64.urlsafe_b64encode(path.encode()).decode().rstrip("=")


def _decode(artifact_id: str) -> str:
    try:
        return base64.urlsafe_b64decode(artifact_id + "=" * (-len(artifact_id) % 4)).decode()
    except (binascii.Error, UnicodeDecodeError, ValueError) as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such artifact") from exc


async def _artifacts(task: Task, session: AsyncSession, user: Any) -> list[Artifact]:
    """Outputs the agent made, then inputs that were uploaded; `relative_path` is the folder.
    Inputs are listed through app.sandbox.fs (links, FIFOs and hard-linked files left out)."""
    assert task.id is not None
    made = await files_api.list_artifacts(task.id, session, user)
    found = [_artifact(task, f"output/{f['path']}", True) for f in made]
    root, folder = files_api.input_dest(task)
    found += [_artifact(task, f"input/{rel}", False)
              for rel in await asyncio.to_thread(_inputs, root, folder)]
    return found


def _artifact(task: Task, path: str, agent_created: bool) -> Artifact:
    """An artifact for workspace path `path` (output/… or input/…). `created_at` is the task's
    last change: the host reads no timestamps from the workspace, which the jail controls."""
    inner = path.split("/", 1)[1]
    folder, _, name = inner.rpartition("/")
    stamp = task.updated_at or task.created_at or datetime.now().astimezone()
    return Artifact(artifact_id=_encode(path), agent_created=agent_created, file_name=name,
                    relative_path=folder, created_at=stamp)


def _inputs(root: Path, folder: str) -> list[str]:
    """Regular single-link files below input/ (relative to it), never following a link."""
    try:
        return [e.path for e in itertools.islice(fs.files(root, folder), files_api.MAX_LISTED)]
    except PathRefused:  # none uploaded yet, or a link planted in place of input/
        return []


@router.get("/tasks/{task_id}/artifacts", response_model=ArtifactListResponse)
async def list_agent_task_artifacts(task_id: str, session: SessionDep, user: CurrentUser,
                                    current_page: Page = 1, page_size: PageSize = 10,
                                    ) -> ArtifactListResponse:
    task = await owned_task(session, _task_id(task_id), user)
    found = await _artifacts(task, session, user)
    start = (current_page - 1) * page_size
    return ArtifactListResponse(artifacts=found[start:start + page_size],
                                pagination=_pagination(len(found), current_page, page_size))


@router.post("/tasks/{task_id}/artifacts", response_model=Artifact, responses=ENDED)
async def upload_agent_task_artifacts(
    task_id: str, session: SessionDep, user: CurrentUser,
    file: Annotated[UploadFile, File(description="File to upload")],
    relative_path: Annotated[str | None, Form(
        max_length=500, description="Folder (under input/) to put the file in")] = None,
) -> Artifact:
    """An input file for the task, kept in its `relative_path` folder under input/."""
    task = await owned_task(session, _task_id(task_id), user)
    await end_read(session)  # no connection held while the file streams in
    folder = (relative_path or "").strip().strip("/")
    saved = await files_api.store_uploads(task, [file], folder=folder)
    return _artifact(task, f"input/{saved[0]['path']}", False)


@router.get("/tasks/{task_id}/artifacts/{artifact_id}", response_class=StreamingResponse,
            responses=binary())
async def download_agent_task_artifact(task_id: str, artifact_id: str, session: SessionDep,
                                       user: CurrentUser) -> Any:
    tid = _task_id(task_id)
    path = _decode(artifact_id)
    if path.startswith("output/"):
        return await files_api.download_artifact(tid, path[len("output/"):], session, user)
    task = await owned_task(session, tid, user)
    if not path.startswith("input/"):
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such artifact")
    try:
        name = "/".join(fs.split(path[len("input/"):]))
    except PathRefused as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such artifact") from exc
    root, folder = files_api.input_dest(task)
    return await asyncio.to_thread(files_api.file_response, root, f"{folder}/{name}",
                                   Path(name).name)
