"""/tasks/{id}/artifacts, /files and /report.pdf: the files a task takes in and gives out."""

from __future__ import annotations

import asyncio
import itertools
import mimetypes
import os
import re
from collections.abc import Iterator
from pathlib import Path
from typing import Annotated, Any
from urllib.parse import quote

from fastapi import APIRouter, File, Form, HTTPException, UploadFile, status
from fastapi.responses import FileResponse, StreamingResponse
from pydantic import ValidationError

from app.api.deps import CurrentUser, SessionDep, owned_task
from app.api.openapi import ENDED, binary
from app.api.tasks import to_public
from app.core.config import get_settings
from app.core.db import end_read, session_scope
from app.models import TERMINAL_VALUES, Agent, Task, TaskCreate, TaskPublic, TaskStatus
from app.sandbox import fs
from app.sandbox.workspace import PathRefused, Workspace
from app.submit import SubmissionError, submit_task
from app.tasks.enqueue import enqueue
from app.tasks.events import append_event, publish
from app.tasks.lifecycle import close_task

router = APIRouter(prefix="/tasks", tags=["artifacts"])
UPLOAD_SUFFIXES = {
    ".txt", ".md", ".csv", ".tsv", ".json", ".yaml", ".yml", ".toml", ".xml", ".html", ".py",
    ".js", ".ts", ".sql", ".ini", ".cfg", ".rst", ".png", ".jpg", ".jpeg", ".gif", ".svg",
    ".pdf", ".ipynb", ".log",
}
FOLDER_PART = re.compile(r"^[A-Za-z0-9_-][A-Za-z0-9_. -]{0,99}$")
EXECUTABLE_MAGIC = (b"\x7fELF", b"MZ", b"#!")
MAX_LISTED = 10_000
MAX_NAME_CHARS = 200


def output_root(task: Task) -> Workspace | None:
    return Workspace(Path(task.workspace)) if task.workspace else None


def _list_output(root: Path, task_id: int) -> list[dict[str, Any]]:
    files = []
    for entry in itertools.islice(fs.files(root, "output"), MAX_LISTED):
        files.append({"path": entry.path, "bytes": entry.size,
                      "url": f"/api/v1/tasks/{task_id}/artifacts/{entry.path}"})
    return files


@router.get("/{task_id}/artifacts", response_model=list[dict[str, Any]])
async def list_artifacts(task_id: int, session: SessionDep, user: CurrentUser) -> list[dict]:
    """Regular files under the workspace's output/ folder (links and FIFOs are not shown)."""
    task = await owned_task(session, task_id, user)
    ws = output_root(task)
    if ws is None:
        return []
    try:
        return await asyncio.to_thread(_list_output, ws.root, task_id)
    except PathRefused:  # no output/ yet, or a link planted in its place
        return []


def file_response(root: Path, rel: str, name: str) -> StreamingResponse:
    """Stream a workspace file opened through fs (a link, FIFO or device is a 404)."""
    try:
        fh = fs.open_read(root, rel)
    except PathRefused as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from exc
    size = os.fstat(fh.fileno()).st_size

    def chunks() -> Iterator[bytes]:
        with fh:
            while chunk := fh.read(1 << 16):
                yield chunk

    media = mimetypes.guess_type(name)[0] or "application/octet-stream"
    disposition = f"attachment; filename*=utf-8''{quote(name)}"
    return StreamingResponse(chunks(), media_type=media, headers={
        "Content-Length": str(size), "Content-Disposition": disposition})


@router.get("/{task_id}/artifacts/{path:path}", response_class=StreamingResponse,
            responses=binary())
async def download_artifact(task_id: int, path: str, session: SessionDep, user: CurrentUser):
    task = await owned_task(session, task_id, user)
    ws = output_root(task)
    if ws is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "the task has no workspace yet")
    try:
        rel = "/".join(fs.split(path))
    except PathRefused as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from exc
    return await asyncio.to_thread(file_response, ws.root, f"output/{rel}", Path(rel).name)


def _check_upload(name: str, head: bytes) -> str:
    clean = re.sub(r"[^A-Za-z0-9_.-]", "_", os.path.basename(name or "")).lstrip(".")
    if not clean:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, "file name is empty")
    if len(clean) > MAX_NAME_CHARS:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT,
                            f"file name is longer than {MAX_NAME_CHARS} characters")
    if Path(clean).suffix.lower() not in UPLOAD_SUFFIXES:
        raise HTTPException(status.HTTP_415_UNSUPPORTED_MEDIA_TYPE,
                            f"{clean}: file type not accepted; allowed: "
                            + ", ".join(sorted(UPLOAD_SUFFIXES)))
    if head.startswith(EXECUTABLE_MAGIC):
        raise HTTPException(status.HTTP_415_UNSUPPORTED_MEDIA_TYPE,
                            f"{clean}: executables and scripts with #! are not accepted")
    return clean


async def _save(upload: UploadFile, dest: tuple[Path, str], limit: int) -> dict[str, Any]:
    """Stream one upload into `dest` (root, folder) through fs: a temp file created
    exclusively, renamed over the name at the end; a link planted there is replaced."""
    head = await upload.read(512)
    name = _check_upload(upload.filename or "", head)
    root, folder = dest
    size = len(head)
    try:
        writer = fs.atomic_writer(root, f"{folder}/{name}")
        fh = await asyncio.to_thread(writer.__enter__)
    except PathRefused as exc:
        raise HTTPException(status.HTTP_409_CONFLICT, f"cannot store {name}: {exc}") from exc
    try:
        await asyncio.to_thread(fh.write, head)
        while chunk := await upload.read(1 << 16):
            size += len(chunk)
            if size > limit:
                raise HTTPException(status.HTTP_413_CONTENT_TOO_LARGE,
                                    f"{name} is larger than {limit} bytes")
            await asyncio.to_thread(fh.write, chunk)
    except BaseException as exc:
        await asyncio.to_thread(writer.__exit__, type(exc), exc, exc.__traceback__)
        raise
    await asyncio.to_thread(writer.__exit__, None, None, None)
    return {"name": name, "bytes": size}


def input_dest(task: Task) -> tuple[Path, str]:
    """(root, folder) where a task's input files go: input/ of its workspace, or a staging
    folder under var_dir until the workspace exists."""
    ws = output_root(task)
    if ws is not None:
        return ws.root, "input"
    staging = get_settings().var_dir / "uploads"
    staging.mkdir(parents=True, exist_ok=True)  # the host's own folder under var_dir
    return staging, str(int(task.id or 0))


@router.post("/{task_id}/files", status_code=status.HTTP_201_CREATED,
             response_model=list[dict[str, Any]], responses=ENDED)
async def upload_files(
    task_id: int, session: SessionDep, user: CurrentUser,
    files: Annotated[list[UploadFile], File(description="input files for the task")],
) -> list[dict]:
    """Upload input files; they appear in the workspace's input/ folder."""
    task = await owned_task(session, task_id, user)
    await end_read(session)  # no connection held while the files stream in
    return await store_uploads(task, files)


def _checked_folder(folder: str) -> str:
    if folder and not all(FOLDER_PART.match(part) for part in folder.split("/")):
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT,
                            "relative_path: each folder name may hold letters, digits, _ . - and "
                            f"spaces, and not start with a dot: {folder!r}")
    return folder


async def store_uploads(task: Task, files: list[UploadFile], *, folder: str = "") -> list[dict]:
    """Save input files under input/`folder` (a relative folder, checked); one event for all."""
    assert task.id is not None
    if task.status in TERMINAL_VALUES:
        raise HTTPException(status.HTTP_409_CONFLICT, f"task {task.id} has ended")
    root, base = input_dest(task)
    dest = f"{base}/{_checked_folder(folder)}" if folder else base
    if folder:
        try:
            await asyncio.to_thread(fs.makedirs, root, dest)
        except PathRefused as exc:
            raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT,
                                f"relative_path: {exc}") from exc
    limit = get_settings().max_upload_bytes
    saved = [await _save(f, (root, dest), limit) for f in files[:20]]
    for item in saved:
        item["path"] = f"{folder}/{item['name']}" if folder else item["name"]
    async with session_scope() as write:
        event = await append_event(write, task.id, "files_uploaded", {"files": saved})
    publish([event])
    return saved


@router.post("/with-files", status_code=status.HTTP_201_CREATED, response_model=TaskPublic)
async def create_task_with_files(
    session: SessionDep, user: CurrentUser,
    task: Annotated[str, Form(description="the task as JSON, as for POST /tasks")],
    files: Annotated[list[UploadFile], File(description="input files for the task")],
) -> TaskPublic:
    """Submit a task and its input files at once (multipart); the files land in input/."""
    try:
        task_in = TaskCreate.model_validate_json(task)
    except ValidationError as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, [
            {"loc": ["body", "task", *e["loc"]], "msg": e["msg"], "type": e["type"]}
            for e in exc.errors(include_url=False, include_context=False)]) from exc
    try:
        created = await submit_task(session=session, task_in=task_in, owner=user,
                                    enqueue_now=False)
    except SubmissionError as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, exc.errors) from exc
    assert created.id is not None
    limit = get_settings().max_upload_bytes
    try:
        saved = [await _save(f, input_dest(created), limit) for f in files[:20]]
    except HTTPException:
        async with session_scope() as write:
            await close_task(write, created.id, TaskStatus.failed, error="input files refused")
        raise
    async with session_scope() as write:
        event = await append_event(write, created.id, "files_uploaded", {"files": saved})
    publish([event])
    if created.agent_id is not None:  # assigned at submission: enqueue now the files are in
        agent = await session.get(Agent, created.agent_id)
        await end_read(session)  # the enqueue reads on a connection of its own
        await enqueue([(created.id, agent.name if agent else "")])
    return await to_public(session, created)


@router.get("/{task_id}/report.pdf", response_class=FileResponse,
            responses=binary("application/pdf", "The task's report as PDF"))
async def report_pdf(task_id: int, session: SessionDep, user: CurrentUser):
    """The task's PDF report, rendered on demand when missing."""
    await owned_task(session, task_id, user)
    await end_read(session)  # the report reads (and renders) on connections of its own
    from app.integrations.report import ensure_report  # WeasyPrint: loaded on first use

    path = await ensure_report(task_id)
    return FileResponse(path, media_type="application/pdf", filename=f"task-{task_id}.pdf")
