"""A step's write (app.run.steps): stored whole or kept for the next flush, never waiting on the
event loop for SQLite's write lock, and telling the loop whether the inbox holds anything."""

from __future__ import annotations

import asyncio
import sqlite3
from pathlib import Path

import pytest

from tests.factories.scenario import make_run_context


async def _event_types(task_id: int) -> list[str]:
    from app.core.db import session_scope
    from app.tasks.events import list_events

    async with session_scope() as session:
        return [e.type for e in await list_events(session, task_id)]


async def test_a_step_waits_for_a_held_write_lock_off_the_event_loop(db, env):
    # given a run, and another connection holding SQLite's write lock
    ctx = await make_run_context({})
    holder = sqlite3.connect(Path(env["TASKBENCH_DATABASE_URL"].split(":///", 1)[1]),
                             isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")
    try:
        # when the run writes a step meanwhile
        ctx.record("note", {"n": 1})
        write = asyncio.ensure_future(ctx.flush())
        await asyncio.sleep(0.3)
        # then the write waits for the lock, and the event loop runs on meanwhile (this test's
        # own sleep came back while the lock was still held)
        assert not write.done()
    finally:
        holder.execute("COMMIT")
        holder.close()
    await write
    # and once the lock is free the step is stored, once
    assert (await _event_types(ctx.task_id)).count("note") == 1


@pytest.mark.parametrize("db_url", ["sqlite", "postgres"], indirect=True)
async def test_a_failed_step_write_keeps_its_record_for_the_next(db, monkeypatch):
    from app.run import context

    # given a run whose first step write fails
    ctx = await make_run_context({})
    real_store = context.store_step

    async def refuse(*_args: object) -> None:
        raise RuntimeError("the disk is on fire")

    ctx.record("first", {})
    monkeypatch.setattr(context, "store_step", refuse)
    with pytest.raises(RuntimeError):
        await ctx.flush()
    # when the next step writes
    monkeypatch.setattr(context, "store_step", real_store)
    ctx.record("second", {})
    await ctx.flush()
    # then both steps' events are stored, in order, once each
    types = await _event_types(ctx.task_id)
    assert [t for t in types if t in ("first", "second")] == ["first", "second"]


@pytest.mark.parametrize("db_url", ["sqlite", "postgres"], indirect=True)
async def test_a_step_write_tells_whether_the_inbox_holds_messages(db):
    from app.core.db import session_scope
    from app.models import TaskMessage

    # given a run with an empty inbox
    ctx = await make_run_context({})
    await ctx.emit("a")
    assert await ctx.take_messages() == []
    # when a message is posted and the run's next step is written
    async with session_scope() as session:
        session.add(TaskMessage(task_id=ctx.task_id, author="owner", content="hello"))
    await ctx.emit("b")
    # then the next look at the inbox takes it, and the one after finds nothing more
    assert [m.content for m in await ctx.take_messages()] == ["hello"]
    await ctx.emit("c")
    assert ctx.inbox_waiting is False
    assert await ctx.take_messages() == []


@pytest.mark.parametrize("db_url", ["postgres"], indirect=True)
async def test_a_run_whose_kept_connection_was_cut_writes_on_a_fresh_one(db, db_url):
    import asyncpg

    # given a run writing its steps on one kept connection
    ctx = await make_run_context({})
    async with ctx.connection.kept():
        await ctx.emit("first")
        # when the server ends every connection to the database, the kept one among them
        admin = await asyncpg.connect(db_url.replace("postgresql+asyncpg://", "postgresql://"))
        try:
            await admin.execute(
                "SELECT pg_terminate_backend(pid) FROM pg_stat_activity "
                "WHERE datname = current_database() AND pid <> pg_backend_pid()")
        finally:
            await admin.close()
        await ctx.emit("second")
    # then the next step is written all the same, and nothing twice
    types = await _event_types(ctx.task_id)
    assert [t for t in types if t in ("first", "second")] == ["first", "second"]
