"""Fixtures shared by the deliverables tests: settings in a temp dir, a migrated SQLite database,
and plain factory functions for users, tasks, events and workspaces."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest
from sqlalchemy.ext.asyncio import AsyncEngine

from app.core.config import Settings, reset_settings
from app.core.db import make_engine, session_scope
from app.models import Task, TaskEvent, User, utcnow
from app.sandbox.workspace import Workspace
from app.tools.registry import ToolContext


@pytest.fixture
def settings(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Settings:
    env = {
        "TASKBENCH_VAR_DIR": str(tmp_path / "var"),
        "TASKBENCH_WORKSPACES_DIR": str(tmp_path / "workspaces"),
        "TASKBENCH_DATABASE_URL": f"sqlite+aiosqlite:///{tmp_path / 'tb.db'}",
        "TASKBENCH_PUBLIC_URL": "http://taskbench.test",
        "TASKBENCH_SMTP_URL": "",
        "TASKBENCH_OUTBOX_RETRY_BASE_S": "30",
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    settings = reset_settings()
    yield settings
    monkeypatch.undo()
    reset_settings()


@pytest.fixture
async def engine(settings: Settings) -> AsyncIterator[AsyncEngine]:
    try:
        from app.ops.migrate import upgrade
    except ImportError:  # the lead's migrations are not there yet
        upgrade = None
    if upgrade is not None:
        await asyncio.to_thread(upgrade, settings.db_url)  # env.py runs its own event loop
    eng = make_engine(settings.db_url)
    if upgrade is None:
        from sqlmodel import SQLModel

        async with eng.begin() as conn:
            await conn.run_sync(SQLModel.metadata.create_all)
    yield eng
    await eng.dispose()


def make_workspace(settings: Settings, task_id: int) -> Workspace:
    ws = Workspace.for_task(settings.workspaces_dir, "tester", task_id)
    ws.create(title=f"task {task_id}", description="a test task")
    return ws


async def create_task(engine: AsyncEngine, settings: Settings, **fields: Any) -> Task:
    """A task row (and its owner and workspace), committed."""
    async with session_scope(engine) as session:
        user = User(email=f"owner{utcnow().timestamp()}@example.com")
        session.add(user)
        await session.flush()
        now = utcnow()
        values: dict[str, Any] = {
            "owner_id": user.id,
            "title": "Compare three charting libraries",
            "status": "completed",
            "summary": "Matplotlib wins on breadth.",
            "started_at": now - timedelta(minutes=3),
            "finished_at": now,
            "model_used": "scripted/model",
            "prompt_tokens": 1200,
            "completion_tokens": 340,
            "cost_usd": 0.0123,
            "steps": 4,
        }
        values.update(fields)
        task = Task(**values)
        session.add(task)
        await session.flush()
        ws = make_workspace(settings, task.id or 0)
        task.workspace = str(ws.root)
        session.add(task)
    return task


async def add_events(engine: AsyncEngine, task_id: int, events: list[tuple[str, dict]]) -> None:
    async with session_scope(engine) as session:
        task = await session.get(Task, task_id)
        assert task is not None
        for type_, data in events:
            task.last_seq += 1
            session.add(TaskEvent(task_id=task_id, seq=task.last_seq, type=type_, data=data))
        session.add(task)


def sample_events(n_tools: int = 3, n_citations: int = 3) -> list[tuple[str, dict]]:
    events: list[tuple[str, dict]] = [("phase", {"phase": "design"})]
    events.append(
        (
            "search",
            {
                "query": "python charting libraries",
                "backend": "duckduckgo",
                "results": [{"title": "Plotting", "url": "https://ex.org/p", "snippet": "..."}],
            },
        )
    )
    for i in range(n_citations):
        events.append(
            (
                "citation",
                {
                    "url": f"https://docs.example.org/page-{i}",
                    "title": f"Charting guide {i}",
                    "fetched_at": "2024-01-01",
                    "path": f"research/page-{i}.md",
                },
            )
        )
    for i in range(n_tools):
        events.append(
            (
                "llm_call",
                {
                    "model": "scripted/model",
                    "prompt_tokens": 100,
                    "completion_tokens": 20,
                    "cost_usd": 0.001,
                },
            )
        )
        events.append(
            (
                "tool_call",
                {
                    "tool": "write_file",
                    "args": {"path": f"output/f{i}.txt"},
                    "ok": True,
                    "output": "x" * 5000,
                    "duration_ms": 3.2,
                },
            )
        )
    events.append(("review", {"score": 8, "findings": ["clear"], "verdict": "pass"}))
    events.append(("status", {"status": "completed", "reason": ""}))
    events.append(("finished", {"summary": "done"}))
    return events


def png_image(width: int = 40, height: int = 20) -> bytes:
    """A small valid PNG (solid colour), built by hand so tests need no imaging library."""
    import struct
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        body = kind + data
        return struct.pack(">I", len(data)) + body + struct.pack(">I", zlib.crc32(body))

    rows = b"".join(b"\x00" + b"\x1a\x5f\xb4" * width for _ in range(height))
    header = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (
        b"\x89PNG\r\n\x1a\n"
        + chunk(b"IHDR", header)
        + chunk(b"IDAT", zlib.compress(rows))
        + chunk(b"IEND", b"")
    )


def bar_chart_svg(values: list[int], extra: str = "") -> str:
    bars = "".join(
        f'<rect x="{10 + i * 30}" y="{100 - v}" width="20" height="{v}" fill="#1a5fb4"/>'
        for i, v in enumerate(values)
    )
    return (
        f'<svg xmlns="http://www.w3.org/2000/svg" xmlns:xlink="http://www.w3.org/1999/xlink"'
        f' width="200" height="110">{bars}{extra}</svg>'
    )


def tool_context(
    task: Task, settings: Settings, *, events: list | None = None,
    services: dict[str, Any] | None = None,
) -> ToolContext:
    """A ToolContext for `task` whose emitted events land in `events` as {type, data}."""
    sink = events if events is not None else []

    async def emit(type_: str, data: dict[str, Any]) -> None:
        sink.append({"type": type_, "data": data})

    return ToolContext(task_id=task.id or 0, workspace=Workspace(Path(task.workspace or ".")),
                       settings=settings, emit=emit, task=task.model_dump(),
                       services=services or {})
