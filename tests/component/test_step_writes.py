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


@pytest.mark.parametrize("db_url", ["postgres"], indirect=True)
async def test_a_step_write_cancelled_after_its_commit_is_not_written_again(
    db, db_url, monkeypatch
):
    import asyncpg
    from sqlalchemy import make_url

    from app.core.config import reset_settings
    from app.core.db import dispose_engines
    from tests.fakes.tcp_proxy import ReplyHoldingProxy

    # given a run whose database connections go through a relay that can hold back replies
    url = make_url(db_url)
    proxy = ReplyHoldingProxy(url.host or "127.0.0.1", url.port or 5432)
    monkeypatch.setenv("TASKBENCH_DATABASE_URL",
                       url.set(port=await proxy.start()).render_as_string(hide_password=False))
    reset_settings()
    await dispose_engines()
    direct = await asyncpg.connect(db_url.replace("postgresql+asyncpg://", "postgresql://"))
    try:
        ctx = await make_run_context({})
        async with ctx.connection.kept():
            await ctx.emit("first")
            # when a step's write commits on the server while its answer is held back, and
            # the run is cancelled then (a person cancelled the task, a time budget ran out)
            proxy.hold()
            ctx.record("second")
            write = asyncio.ensure_future(ctx.flush())
            while not await direct.fetchval(
                    "SELECT count(*) FROM task_event WHERE task_id = $1 AND type = 'second'",
                    ctx.task_id):
                await asyncio.sleep(0.01)
            write.cancel()
            await asyncio.sleep(0.1)
            proxy.release()
            with pytest.raises(asyncio.CancelledError):
                await write
            # and the run's end writes what it has left (as the runner's "stopped" does)
            await ctx.emit("stopped")
        # then the step that committed is stored once
        types = [r["type"] for r in await direct.fetch(
            "SELECT type FROM task_event WHERE task_id = $1 ORDER BY seq", ctx.task_id)]
        assert [t for t in types if t in ("first", "second", "stopped")] == [
            "first", "second", "stopped"]
    finally:
        await direct.close()
        await dispose_engines()
        await proxy.close()


def _records() -> list:
    """Steps of every shape the one-statement write covers, fresh for each use."""
    from app.run.llm_reply import Completion
    from app.run.step_record import Checkpoint
    from app.run.steps import StepRecord
    from app.tools.registry import Dispatched

    def call(model: str, **usage: object) -> Completion:
        return Completion(message={"role": "assistant", "content": "x"}, model=model, **usage)

    return [
        StepRecord(  # a phase starts, a call whose usage was estimated, two tool results
            events=[("phase", {"phase": "design"}), ("llm_call", {"model": "m1", "n": 1})],
            calls=[(call("m1", prompt_tokens=10, completion_tokens=5, cost_usd=0.001,
                          usage_estimated=True, cached_tokens=3), "agent")],
            tool_results=[Dispatched("list_files", True, "a", {"cpu_s": 0.25,
                                                                "peak_rss_kb": 1000}, 12.5),
                          Dispatched("run_command", False, "no", {}, 3.3, refused=True)],
            phase="design",
            checkpoint=Checkpoint([{"role": "user", "content": "hi"}], 0, 0,
                                  {"current": "design"}, "design")),
        StepRecord(  # an inspector's call: model_used stays the agent's
            events=[("llm_call", {"model": "judge"})],
            calls=[(call("judge", prompt_tokens=7, completion_tokens=2, cost_usd=0.5),
                    "inspector")],
            tool_results=[Dispatched("run_python", True, "ok", {"cpu_s": 1,
                                                                "peak_rss_kb": 400}, 1000.0)],
            checkpoint=Checkpoint([{"role": "user", "content": "hi"},
                                   {"role": "assistant", "content": "é"}], 1, 1, {}, "design")),
        StepRecord(  # condensed: the second message rewritten, the third gone
            events=[("condensed", {})],
            checkpoint=Checkpoint([{"role": "user", "content": "hi"},
                                   {"role": "user", "content": "[cut]"}], 1, 3, {}, "design")),
        StepRecord(events=[("note", {"text": "sk-" + "s" * 30})]),  # redacted on the way in
        StepRecord(phase="build", events=[("phase", {"phase": "build"})]),
    ]


async def _stored(task_id: int) -> dict:
    from sqlmodel import select

    from app.core.db import session_scope
    from app.models import Task, TaskEvent
    from app.run.checkpoints import load_checkpoint

    async with session_scope() as session:
        task = await session.get(Task, task_id)
    checkpoint = await load_checkpoint(task_id)
    async with session_scope() as session:
        events = (await session.exec(select(TaskEvent).where(TaskEvent.task_id == task_id)
                                     .order_by(TaskEvent.seq))).all()
    assert task is not None and checkpoint is not None
    return {
        "task": {k: getattr(task, k) for k in ("last_seq", "steps", "prompt_tokens",
                                               "completion_tokens", "model_used", "status",
                                               "phase")},
        "cost": task.cost_usd, "usage": task.usage,
        "events": [(e.seq, e.type, e.data) for e in events],
        "checkpoint": (checkpoint.messages, checkpoint.state, checkpoint.phase),
    }


@pytest.mark.parametrize("db_url", ["sqlite", "postgres"], indirect=True)
async def test_the_one_statement_write_stores_what_the_general_write_stores(db, db_url):
    from sqlalchemy import update

    from app.core.db import RunConnection, connection_scope, get_engine, inline_write
    from app.models import Task
    from app.run import step_changes, steps, steps_postgres, steps_sqlite

    async def one_statement(task_id: int, record: steps.StepRecord) -> object:
        changes = step_changes.changes_of(record)
        if db_url.startswith("sqlite"):
            with inline_write(get_engine()) as conn:
                return steps_sqlite.write(conn, task_id, changes)
        async with RunConnection().driver() as driver:
            return await steps_postgres.write(driver, task_id, changes)

    async def cancel(task_id: int) -> None:
        async with connection_scope() as conn:
            await conn.execute(update(Task).where(Task.id == task_id)  # type: ignore[arg-type]
                               .values(status="cancelled"))

    # given two tasks, and the same steps for each, the last one after the task was cancelled
    general, single = await make_run_context({}), await make_run_context({})
    # when one task's steps go through the general write and the other's through the statement
    for index, record in enumerate(_records()):
        if index == 4:
            await cancel(general.task_id)
        async with connection_scope() as conn:
            await conn.run_sync(steps.write_step, general.task_id, record, None)
    for index, record in enumerate(_records()):
        if index == 4:
            await cancel(single.task_id)
        assert step_changes.covers(record, False)
        assert await one_statement(single.task_id, record) is not None
    # then both tasks hold the same counters, usage, events and checkpoint
    a, b = await _stored(general.task_id), await _stored(single.task_id)
    assert a["task"] == b["task"] and a["task"]["status"] == "cancelled"
    assert b["cost"] == pytest.approx(a["cost"])
    assert b["usage"] == pytest.approx(a["usage"])
    assert b["usage"]["peak_rss_kb"] == 1000 and b["usage"]["tool_refusals"] == 1
    assert a["events"] == b["events"] and "sk-" not in str(b["events"])
    assert a["checkpoint"] == b["checkpoint"]


async def _message_rows(task_id: int) -> dict[int, dict]:
    from sqlalchemy import select

    from app.core.db import get_engine
    from app.models import CheckpointMessage, table

    m = table(CheckpointMessage)
    async with get_engine().connect() as conn:
        rows = (await conn.execute(select(m.c.idx, m.c.message)
                                   .where(m.c.task_id == task_id))).all()
    return {idx: message for idx, message in rows}


async def _set_message_row(task_id: int, idx: int, message: dict) -> None:
    from sqlalchemy import update

    from app.core.db import connection_scope
    from app.models import CheckpointMessage, table

    m = table(CheckpointMessage)
    async with connection_scope() as conn:
        await conn.execute(update(m).where(m.c.task_id == task_id, m.c.idx == idx)
                           .values(message=message))


@pytest.mark.parametrize("db_url", ["sqlite", "postgres"], indirect=True)
async def test_a_checkpoint_writes_only_the_messages_new_since_the_last(db):
    # given a run that checkpointed a conversation of two messages
    ctx = await make_run_context({})
    messages = [{"role": "system", "content": "s"}, {"role": "user", "content": "task"}]
    await ctx.save_checkpoint(messages, {"current": "design"})
    # and the stored first message changed behind the run's back (a marker)
    await _set_message_row(ctx.task_id, 0, {"role": "system", "content": "marker"})
    # when the next step appends a reply and a tool result and checkpoints
    messages += [{"role": "assistant", "content": "a"}, {"role": "tool", "content": "t"}]
    await ctx.save_checkpoint(messages, {"current": "design"})
    # then only the two new messages were written: the first row still holds the marker
    rows = await _message_rows(ctx.task_id)
    assert rows[0]["content"] == "marker"
    assert [rows[i] for i in (1, 2, 3)] == messages[1:]


@pytest.mark.parametrize("db_url", ["sqlite", "postgres"], indirect=True)
async def test_a_resumed_run_gets_the_same_conversation_after_condensing(db):
    from app.run.condense import condense

    # given a run whose long conversation was checkpointed step by step
    ctx = await make_run_context({})
    messages = [{"role": "system", "content": "system"}, {"role": "user", "content": "task"}]
    for i in range(8):
        messages += [
            {"role": "assistant", "content": f"step {i}", "tool_calls": [
                {"id": f"c{i}", "type": "function",
                 "function": {"name": "read_file", "arguments": f'{{"path": "f{i}"}}'}}]},
            {"role": "tool", "tool_call_id": f"c{i}", "content": f"out{i} " + "x" * 2000}]
        await ctx.save_checkpoint(messages, {"step": i})
    # when it is condensed (the loop replaces the list's contents), then goes on a step
    shorter = condense(messages, None, target_tokens=1500)
    assert shorter is not None and len(shorter) < len(messages)
    messages[:] = shorter
    await ctx.save_checkpoint(messages, {"step": "condensed"})
    messages.append({"role": "assistant", "content": "after"})
    await ctx.save_checkpoint(messages, {"step": "after"})
    # then a new run of the task loads exactly this conversation, and no row past its end
    again = await make_run_context({})
    again.task = ctx.task
    loaded = await again.load_checkpoint()
    assert loaded is not None and loaded.messages == messages
    assert loaded.state["step"] == "after" and again.stored_messages == messages
    assert sorted(await _message_rows(ctx.task_id)) == list(range(len(messages)))


@pytest.mark.parametrize("db_url", ["sqlite", "postgres"], indirect=True)
async def test_a_checkpoint_written_before_deltas_still_loads(db):
    from app.core.db import session_scope
    from app.models import TaskCheckpoint

    # given a checkpoint as written before messages had rows of their own
    ctx = await make_run_context({})
    old = [{"role": "system", "content": "s"}, {"role": "user", "content": "u"}]
    async with session_scope() as session:
        session.add(TaskCheckpoint(task_id=ctx.task_id, messages=old, state={"current": "x"}))
    # when the run loads it, then goes on a step
    loaded = await ctx.load_checkpoint()
    assert loaded is not None and loaded.messages == old and loaded.message_count is None
    messages = [*loaded.messages, {"role": "assistant", "content": "a"}]
    await ctx.save_checkpoint(messages, {"current": "x"})
    # then the whole conversation is in rows from then on
    reloaded = await ctx.load_checkpoint()
    assert reloaded is not None and reloaded.messages == messages
