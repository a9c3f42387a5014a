"""Migration 0005: agents seeded before the editing tools existed get them."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator

import pytest
import sqlalchemy as sa
from alembic import command
from sqlalchemy.ext.asyncio import create_async_engine

from app.ops.migrate import alembic_config
from tests.conftest import create_pg_database, drop_pg_database

AGENT = sa.table("agent", *(sa.column(c) for c in (
    "name", "description", "model", "min_complexity", "max_complexity", "max_concurrent",
    "status", "active_tasks", "tasks_done", "reviews_passed", "reviews_failed", "created_at")),
    sa.column("fallback_models", sa.JSON()), sa.column("escalation_models", sa.JSON()),
    sa.column("allowed_tools", sa.JSON()), sa.column("allowed_commands", sa.JSON()),
    sa.column("config", sa.JSON()))


@pytest.fixture(params=["sqlite", pytest.param("postgres", marks=pytest.mark.postgres)])
def url(request, tmp_path) -> Iterator[str]:
    if request.param == "sqlite":
        yield f"sqlite+aiosqlite:///{tmp_path / 'old.db'}"
        return
    made = create_pg_database()
    yield made
    drop_pg_database(made)


def run(url: str, statement) -> list:
    async def go() -> list:
        engine = create_async_engine(url)
        async with engine.begin() as conn:
            result = await conn.execute(statement)
            rows = list(result.all()) if result.returns_rows else []
        await engine.dispose()
        return rows

    return asyncio.run(go())


def tools_by_name(url: str) -> dict[str, list[str]]:
    return dict(run(url, sa.select(AGENT.c.name, AGENT.c.allowed_tools)))


def test_agents_that_write_files_get_the_edit_tools(url):
    # given a database at the revision before, with an old-style writer, a reader, an open one
    command.upgrade(alembic_config(url), "0004_templates")
    base = {"description": "", "model": "m", "fallback_models": [], "escalation_models": [],
            "min_complexity": 1, "max_complexity": 10, "max_concurrent": 1,
            "allowed_commands": [], "config": {}, "status": "available", "active_tasks": 0,
            "tasks_done": 0, "reviews_passed": 0, "reviews_failed": 0,
            "created_at": sa.func.now()}
    for name, tools in (("writer", ["read_file", "write_file", "finish"]),
                        ("reader", ["read_file", "finish"]), ("any", [])):
        run(url, AGENT.insert().values(name=name, allowed_tools=tools, **base))
    # when it is upgraded
    command.upgrade(alembic_config(url), "heads")
    # then only the writer gained the editing tools (an empty list already allows every tool)
    assert tools_by_name(url) == {
        "writer": ["read_file", "write_file", "finish", "view_file", "edit_file",
                   "insert_lines", "undo_edit"],
        "reader": ["read_file", "finish"], "any": []}
    # and a downgrade takes them away again
    command.downgrade(alembic_config(url), "0004_templates")
    assert tools_by_name(url)["writer"] == ["read_file", "write_file", "finish"]
