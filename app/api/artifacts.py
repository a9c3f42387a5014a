"""/tasks/{id}/artifacts, /files and /report.pdf: the files a task takes in and gives out."""

from __future__ import annotations

import os
import re
from pathlib import Path
from typing import Annotated, Any

from fastapi import APIRouter, File, Form, HTTPException, UploadFile, status
from fastapi.responses import FileResponse
from pydantic import ValidationError

from app.api.deps import CurrentUser, SessionDep, owned_task
from app.api.tasks import to_public
from app.core.config import get_settings
from app.core.db import session_scope
from app.models import TERMINAL, Agent, Task, TaskCreate, TaskPublic, TaskStatus
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
EXECUTABLE_MAGIC = (b"\x7fELF", b"MZ", b"#!")


def uploads_dir(task_id: int) -> Path:
    """Where files uploaded for a task wait until its workspace exists (then input/)."""
    return get_settings().var_dir / "uploads" / str(task_id)


def output_root(task: Task) -> Workspace | None:
    return Workspace(Path(task.workspace)) if task.workspace else None


@router.get("/{task_id}/artifacts", response_model=list[dict[str, Any]])
async def list_artifacts(task_id: int, session: SessionDep, user: CurrentUser) -> list[dict]:
    """Files under the workspace's output/ folder."""
    task = await owned_task(session, task_id, user)
    ws = output_root(task)
    if ws is None or not ws.output.is_dir():
        return []
    files = []
    for dirpath, dirnames, filenames in os.walk(ws.output):
        dirnames[:] = sorted(d for d in dirnames if not os.path.islink(os.path.join(dirpath, d)))
        for name in sorted(filenames):
            full = Path(dirpath) / name
            if full.is_symlink():
                continue
            rel = str(full.relative_to(ws.output))
            files.append({"path": rel, "bytes": full.stat().st_size,
                          "url": f"/api/v1/tasks/{task_id}/artifacts/{rel}"})
    return files


@router.get("/{task_id}/artifacts/{path:path}", response_class=FileResponse)
async def download_artifact(task_id: int, path: str, session: SessionDep, user: CurrentUser):
    task = await owned_task(session, task_id, user)
    ws = output_root(task)
    if ws is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "the task has no workspace yet")
    try:
        target = ws.resolve(f"output/{path}", must_exist=True)
        Workspace(ws.output).resolve(path, must_exist=True)
    except PathRefused as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, str(exc)) from exc
    if not target.is_file():
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"{path} is not a file")
    return FileResponse(target, filename=target.name)


def _check_upload(name: str, head: bytes) -> str:
    clean = re.sub(r"[^A-Za-z0-9_.-]", "_", os.path.basename(name or "")).lstrip(".")
    if not clean:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, "file name is empty")
    if Path(clean).suffix.lower() not in UPLOAD_SUFFIXES:
        raise HTTPException(status.HTTP_415_UNSUPPORTED_MEDIA_TYPE,
                            f"{clean}: file type not accepted; allowed: "
                            + ", ".join(sorted(UPLOAD_SUFFIXES)))
    if head.startswith(EXECUTABLE_MAGIC):
        raise HTTPException(status.HTTP_415_UNSUPPORTED_MEDIA_TYPE,
                            f"{clean}: executables and scripts with #! are not accepted")
    return clean


async def _save(upload: UploadFile, dest_dir: Path, limit: int) -> dict[str, Any]:
    head = await upload.read(512)
    name = _check_upload(upload.filename or "", head)
    dest_dir.mkdir(parents=True, exist_ok=True)
    target = dest_dir / name
    size = len(head)
    with open(target, "wb") as fh:
        fh.write(head)
        while chunk := await upload.read(1 << 16):
            size += len(chunk)
            if size > limit:
                fh.close()
                target.unlink(missing_ok=True)
                raise HTTPException(status.HTTP_413_CONTENT_TOO_LARGE,
                                    f"{name} is larger than {limit} bytes")
            fh.write(chunk)
    return {"name": name, "bytes": size}


@router.post("/{task_id}/files", status_code=status.HTTP_201_CREATED,
             response_model=list[dict[str, Any]])
async def upload_files(
    task_id: int, session: SessionDep, user: CurrentUser,
    files: Annotated[list[UploadFile], File(description="input files for the task")],
) -> list[dict]:
    """Upload input files; they appear in the workspace's input/ folder."""
    task = await owned_task(session, task_id, user)
    if task.status in {s.value for s in TERMINAL}:
        raise HTTPException(status.HTTP_409_CONFLICT, f"task {task_id} has ended")
    ws = output_root(task)
    dest = ws.root / "input" if ws else uploads_dir(task_id)
    limit = get_settings().max_upload_bytes
    saved = [await _save(f, dest, limit) for f in files[:20]]
    async with session_scope() as write:
        event = await append_event(write, task_id, "files_uploaded", {"files": saved})
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
        saved = [await _save(f, uploads_dir(created.id), limit) for f in files[:20]]
    except HTTPException:
        async with session_scope() as write:
            await close_task(write, created.id, TaskStatus.failed, error="input files refused")
        raise
    async with session_scope() as write:
        event = await append_event(write, created.id, "files_uploaded", {"files": saved})
    publish([event])
    if created.agent_id is not None:  # assigned at submission: enqueue now the files are in
        agent = await session.get(Agent, created.agent_id)
        await enqueue([(created.id, agent.name if agent else "")])
    return await to_public(session, created)


@router.get("/{task_id}/report.pdf", response_class=FileResponse)
async def report_pdf(task_id: int, session: SessionDep, user: CurrentUser):
    """The task's PDF report, rendered on demand when missing."""
    await owned_task(session, task_id, user)
    try:
        from app.integrations.report import ensure_report
    except ImportError as exc:
        raise HTTPException(status.HTTP_404_NOT_FOUND, "reports are not available") from exc
    path = await ensure_report(task_id)
    return FileResponse(path, media_type="application/pdf", filename=f"task-{task_id}.pdf")
