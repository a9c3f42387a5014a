"""The Agent Protocol face (/ap/v1/agent/tasks…) mapped onto Taskbench tasks.

    AP task      ─ a Taskbench task (id as a string; `input` is the description)
    AP step      ─ one event of the task's log (step_id = seq, name = event type)
    POST step    ─ with input: a message to the agent; without: wait for the next event
    AP artifact  ─ a file in output/ (agent_created) or input/ (uploaded); id = its path, encoded
"""

from __future__ import annotations

import asyncio
import base64
import binascii
from datetime import datetime
from typing import Annotated, Any

from fastapi import APIRouter, File, Form, HTTPException, Query, UploadFile, status
from fastapi.responses import FileResponse
from pydantic import BaseModel, ConfigDict, Field, ValidationError
from sqlmodel import col, func, select
from sqlmodel.ext.asyncio.session import AsyncSession

from app.api import artifacts as files_api
from app.api.deps import CurrentUser, SessionDep, owned_task
from app.api.live import follow
from app.api.tasks import add_message
from app.models import TERMINAL, MessageCreate, Task, TaskCreate, TaskEvent
from app.sandbox.workspace import PathRefused, Workspace
from app.submit import SubmissionError, submit_task
from app.tasks.events import list_events

router = APIRouter(prefix="/ap/v1/agent", tags=["agent-protocol"])
TASK_FIELDS = {"title", "kind", "complexity", "priority", "budget", "notify", "github",
               "playbook", "scenario", "inputs", "agent"}


class TaskRequestBody(BaseModel):
    input: str | None = Field(default=None, max_length=100_000)
    additional_input: dict[str, Any] | None = None


class StepRequestBody(BaseModel):
    model_config = ConfigDict(extra="ignore")

    input: str | None = Field(default=None, max_length=20_000)
    additional_input: dict[str, Any] | None = None


class Artifact(BaseModel):
    artifact_id: str
    agent_created: bool
    file_name: str
    relative_path: str | None = None
    created_at: datetime | None = None


class APTask(BaseModel):
    task_id: str
    input: str | None
    additional_input: dict[str, Any] = Field(default_factory=dict)
    artifacts: list[Artifact] = Field(default_factory=list)


class Step(BaseModel):
    task_id: str
    step_id: str
    name: str | None
    status: str
    input: str | None = None
    output: str | None = None
    additional_input: dict[str, Any] = Field(default_factory=dict)
    additional_output: dict[str, Any] = Field(default_factory=dict)
    artifacts: list[Artifact] = Field(default_factory=list)
    is_last: bool = False


class Pagination(BaseModel):
    total_items: int
    total_pages: int
    current_page: int
    page_size: int


class TaskListResponse(BaseModel):
    tasks: list[APTask]
    pagination: Pagination


class StepListResponse(BaseModel):
    steps: list[Step]
    pagination: Pagination


class ArtifactListResponse(BaseModel):
    artifacts: list[Artifact]
    pagination: Pagination


Page = Annotated[int, Query(ge=1, le=100_000)]
PageSize = Annotated[int, Query(ge=1, le=100)]


def _pagination(total: int, page: int, size: int) -> Pagination:
    return Pagination(total_items=total, total_pages=max(1, -(-total // size)),
                      current_page=page, page_size=size)


def _task_id(raw: str) -> int:
    if not raw.isdigit() or len(raw) > 18:
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
    ended = task.status in {s.value for s in TERMINAL}
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


@router.post("/tasks/{task_id}/steps", response_model=Step)
async def execute_agent_task_step(task_id: str, session: SessionDep, user: CurrentUser,
                                  body: StepRequestBody | None = None) -> Step:
    """With `input`: a message the agent reads on its next step. Without: the task's next
    event (waiting up to `additional_input.wait_s`, default 10 s), `is_last` once it ended."""
    task = await owned_task(session, _task_id(task_id), user)
    body = body or StepRequestBody()
    if body.input:
        if task.status in {s.value for s in TERMINAL}:
            raise HTTPException(status.HTTP_409_CONFLICT, f"task {task_id} has ended")
        await add_message(session, task, MessageCreate(content=body.input), user)
        await session.rollback()  # end the read snapshot: the message was committed elsewhere
        await session.refresh(task)
        event = (await session.exec(select(TaskEvent).where(
            TaskEvent.task_id == task.id, TaskEvent.type == "message")
            .order_by(col(TaskEvent.seq).desc()))).first()
        assert event is not None
        return _step(task, event)
    wait_s = float((body.additional_input or {}).get("wait_s", 10))
    return await _next_step(session, task, min(max(wait_s, 0.0), 30.0))


async def _next_step(session: AsyncSession, task: Task, wait_s: float) -> Step:
    assert task.id is not None
    seen = task.last_seq
    if task.status not in {s.value for s in TERMINAL} and wait_s > 0:
        stream = follow(task.id, after=seen, idle_s=wait_s)
        try:
            item = await asyncio.wait_for(anext(stream), wait_s)
            if item.kind == "event":
                seen = item.data["seq"]
        except TimeoutError:
            pass
        finally:
            await stream.aclose()
    await session.rollback()  # a fresh snapshot: the events came from other transactions
    await session.refresh(task)
    event = (await session.exec(select(TaskEvent).where(
        TaskEvent.task_id == task.id, TaskEvent.seq == seen))).first()
    if event is None:
        return Step(task_id=str(task.id), step_id="0", name="waiting", status="running",
                    output=task.status)
    return _step(task, event)


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
    """Outputs the agent made, then inputs that were uploaded."""
    assert task.id is not None
    made = await files_api.list_artifacts(task.id, session, user)
    found = [Artifact(artifact_id=_encode(f"output/{f['path']}"), agent_created=True,
                      file_name=f["path"].rsplit("/", 1)[-1], relative_path=f["path"])
             for f in made]
    inputs = _input_dir(task)
    if inputs.is_dir():
        found += [Artifact(artifact_id=_encode(f"input/{p.name}"), agent_created=False,
                           file_name=p.name, relative_path=p.name)
                  for p in sorted(inputs.iterdir()) if p.is_file() and not p.is_symlink()]
    return found


def _input_dir(task: Task) -> Any:
    ws = files_api.output_root(task)
    return ws.root / "input" if ws else files_api.uploads_dir(task.id or 0)


@router.get("/tasks/{task_id}/artifacts", response_model=ArtifactListResponse)
async def list_agent_task_artifacts(task_id: str, session: SessionDep, user: CurrentUser,
                                    current_page: Page = 1, page_size: PageSize = 10,
                                    ) -> ArtifactListResponse:
    task = await owned_task(session, _task_id(task_id), user)
    found = await _artifacts(task, session, user)
    start = (current_page - 1) * page_size
    return ArtifactListResponse(artifacts=found[start:start + page_size],
                                pagination=_pagination(len(found), current_page, page_size))


@router.post("/tasks/{task_id}/artifacts", response_model=Artifact)
async def upload_agent_task_artifacts(
    task_id: str, session: SessionDep, user: CurrentUser,
    file: Annotated[UploadFile, File(description="File to upload")],
    relative_path: Annotated[str | None, Form(max_length=500)] = None,
) -> Artifact:
    """An input file for the task (its name is kept, its folders are not)."""
    tid = _task_id(task_id)
    saved = await files_api.upload_files(tid, session, user, [file])
    name = saved[0]["name"]
    return Artifact(artifact_id=_encode(f"input/{name}"), agent_created=False,
                    file_name=name, relative_path=name)


@router.get("/tasks/{task_id}/artifacts/{artifact_id}", response_class=FileResponse)
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
        target = Workspace(_input_dir(task)).resolve(path[len("input/"):], must_exist=True)
    except PathRefused as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such artifact") from exc
    if not target.is_file():
        raise HTTPException(status.HTTP_404_NOT_FOUND, "no such artifact")
    return FileResponse(target, filename=target.name)
