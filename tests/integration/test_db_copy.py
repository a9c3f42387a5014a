"""`taskbench db copy`: every table moves from SQLite to PostgreSQL with ids kept."""

from __future__ import annotations

import asyncio

from sqlmodel import select

from app.models import Task, TaskEvent
from app.ops.dbcopy import copy_database
from tests.conftest import create_pg_database, drop_pg_database, run_enqueued


async def test_copy_sqlite_to_postgres_keeps_ids_and_counts(app_client, enqueued, llm, env):
    # given a SQLite database with tasks, events and agents
    for title in ("a", "b", "c"):
        await app_client.post("/tasks", json={"title": title, "complexity": 1})
    await run_enqueued(enqueued)
    await app_client.post("/tasks/2/cancel")
    target = await asyncio.to_thread(create_pg_database)
    try:
        # when it is copied to an empty PostgreSQL database
        counts = await copy_database(env["TASKBENCH_DATABASE_URL"], target)
        # then counts match, ids are kept, and new rows get fresh ids
        assert counts["task"] == 3 and counts["task_event"] > 10 and counts["agent"] == 3
        from app.core.db import make_engine, session_factory

        engine = make_engine(target, pooled=False)
        async with session_factory(engine)() as session:
            ids = sorted(t.id for t in (await session.exec(select(Task))).all())
            assert ids == [1, 2, 3]
            first = (await session.exec(select(TaskEvent).where(TaskEvent.task_id == 1))).all()
            assert [e.seq for e in first] == list(range(1, len(first) + 1))
            task = Task(owner_id=1, title="new")
            session.add(task)
            await session.commit()
            assert task.id == 4
        await engine.dispose()
    finally:
        await asyncio.to_thread(drop_pg_database, target)
