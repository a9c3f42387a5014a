"""What a worker's run of a no-op task sends to PostgreSQL, round trip by round trip (issue 15:
throughput). Each round trip is a write, a wake-up of the server and a wait: a run takes the
connection the last one kept (no checkout, no ping), no statement needs a transaction around it
(the lease, the reads, the step writes and a lone end are single statements, atomic on their
own), and a first run reads no checkpoint or journal it cannot have. The one-statement end
keeps the general end's rules: a task ends once however its ends race, and one that notifies
is left to the general end."""

from __future__ import annotations

import asyncio

import pytest

from app.core.db import session_scope
from tests.factories import run_enqueued
from tests.factories.connections import round_trips, statements
from tests.factories.ending import assert_ended_once, holding_slot
from tests.fakes.llm_server import finish

pytestmark = pytest.mark.parametrize("db_url", ["postgres"], indirect=True)


async def _noop(app_client, llm, **body) -> int:  # noqa: ANN001
    llm.responder = lambda _req: finish("nothing to do")
    resp = await app_client.post("/tasks", json={"title": "t", "complexity": 1, **body})
    assert resp.status_code == 201, resp.text
    return int(resp.json()["id"])


async def test_a_first_run_sends_no_round_trip_it_does_not_need(app_client, enqueued, llm):
    # given a warm worker process and a no-op task queued
    await _noop(app_client, llm)
    assert await run_enqueued(enqueued) == ["ran"]
    await _noop(app_client, llm)
    # when a worker runs it
    with round_trips() as driver, statements() as sent:
        assert await run_enqueued(enqueued) == ["ran"]
        await asyncio.sleep(0)  # asyncpg hands its query loggers each query with call_soon
    # then it ran on the connection the last run kept: nothing checked out, so no ping (it was
    # one statement, `;`; asyncpg's ping through SQLAlchemy is BEGIN, `;`, ROLLBACK)
    assert driver.count(";") == 0, driver
    assert [q for q in driver if q.startswith("ROLLBACK")] == [], driver
    # no transaction at all: the lease, the reads, the step writes and the end (a task whose
    # end writes nothing else: one statement, which also says what comes next) went without
    # BEGIN and COMMIT
    assert [q for q in driver if q.startswith(("BEGIN", "COMMIT"))] == [], driver
    # the lease (which records the workspace), three step writes and the last one with the
    # end, all on the driver: 5 round trips (it was 12: a ping, the workspace's own UPDATE, the
    # last step's own write, and the end was BEGIN, the end, its event, COMMIT, and a read
    # after it), asyncpg's first look at a statement's types on a connection aside
    on_driver = [q for q in driver if not q.startswith(("SELECT current_setting('jit')",
                                                         "SELECT set_config('jit'",
                                                         "WITH RECURSIVE typeinfo_tree"))]
    assert len(on_driver) == 5, driver
    assert on_driver[0].startswith("WITH leased AS") and on_driver[-1].startswith(
        "WITH old AS"), driver
    assert sent == [], sent  # nothing through SQLAlchemy
    # and with nothing to resume (the lease says so), no checkpoint or journal was read
    assert [q for q in driver if q.startswith("SELECT c.task_id")] == [], driver
    assert [s for s in sent if s.startswith("SELECT tool_intent.")] == [], sent


async def test_the_last_step_written_with_the_end_is_all_there(app_client, enqueued, llm):
    from app.models import Task, TaskCheckpoint

    # given a no-op task (three phases, each a `finish` at once, the review skipped)
    task_id = await _noop(app_client, llm)
    # when a worker runs it: its last step (the test phase's call, its `finished`, the
    # review's phase and verdict, the checkpoint) goes in the statement that ends it
    assert await run_enqueued(enqueued) == ["ran"]
    # then the log is whole and in order, the last step's events before the status event
    events = (await app_client.get(f"/tasks/{task_id}/events")).json()["data"]
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    assert [e["type"] for e in events][-5:] == [
        "llm_call", "finished", "phase", "review", "status"], events
    assert events[-1]["data"]["status"] == "completed"
    # and the row counts all three calls, and the last step's checkpoint is stored
    async with session_scope() as session:
        task = await session.get(Task, task_id)
        checkpoint = await session.get(TaskCheckpoint, task_id)
    assert task is not None and task.status == "completed" and task.last_seq == len(events)
    assert (task.steps, task.prompt_tokens) == (3, 3 * llm.prompt_tokens), task
    assert task.phase == "review"
    assert checkpoint is not None and checkpoint.state["phases_done"] == [
        "design", "build", "test"], checkpoint.state


@pytest.mark.parametrize("agent_name", [
    "plain", "we ird/na..me", "..", ".hidden.", "ünïcödé agent", ".x" + "é" * 62, "a\tb\nc"])
async def test_the_lease_records_the_workspace_where_the_workspace_is_made(
        app_client, enqueued, llm, agent_name):
    from sqlalchemy import update

    from app.core.config import get_settings
    from app.models import Agent, Task
    from app.sandbox.workspace import Workspace

    # given a no-op task assigned to an agent whose name is not a safe folder name
    task_id = await _noop(app_client, llm)
    async with session_scope() as session:
        task = await session.get(Task, task_id)
        assert task is not None and task.agent_id is not None
        await session.execute(update(Agent).where(Agent.id == task.agent_id)  # type: ignore[arg-type]
                              .values(name=agent_name))
    # when a worker runs it (the lease records the workspace in SQL)
    assert await run_enqueued(enqueued) == ["ran"]
    # then it is the folder the workspace was made in, named by Workspace.for_task's rule
    async with session_scope() as session:
        task = await session.get(Task, task_id)
    assert task is not None and task.workspace is not None
    expected = Workspace.for_task(get_settings().workspaces_dir, agent_name, task_id).root
    assert task.workspace == str(expected)
    assert (expected / "output").is_dir()


async def test_the_last_step_is_not_written_again_when_its_end_lost_its_answer(
        app_client, enqueued, llm, monkeypatch):
    from app.run import steps_postgres

    # given an end with the last step that goes through but whose answer is lost, once
    real, lost = steps_postgres.write_and_complete, []

    async def answer_lost(*args, **kwargs):  # noqa: ANN002, ANN003, ANN202
        done = await real(*args, **kwargs)
        if not lost:
            lost.append(done)
            raise ConnectionResetError("the answer was lost")
        return done

    monkeypatch.setattr(steps_postgres, "write_and_complete", answer_lost)
    task_id = await _noop(app_client, llm)
    # when the run retries its end
    assert await run_enqueued(enqueued) == ["ran"]
    # then the task completed once, and the last step's events are in the log once
    assert lost and lost[0] is not None
    events = (await app_client.get(f"/tasks/{task_id}/events")).json()["data"]
    assert [e["seq"] for e in events] == list(range(1, len(events) + 1))
    types = [e["type"] for e in events]
    assert (types.count("finished"), types.count("review"), types.count("status")) == (3, 1, 2)
    task = (await app_client.get(f"/tasks/{task_id}")).json()
    assert task["status"] == "completed"


async def test_a_connection_kept_long_is_pinged_before_the_next_run(
        app_client, enqueued, llm, monkeypatch):
    from app.core import db

    # given a run's connection kept for the next one, which comes later than it is trusted
    await _noop(app_client, llm)
    assert await run_enqueued(enqueued) == ["ran"]
    monkeypatch.setattr(db, "SPARE_TRUSTED_S", 0.0)
    await _noop(app_client, llm)
    # when the next run takes it
    with round_trips() as driver:
        assert await run_enqueued(enqueued) == ["ran"]
        await asyncio.sleep(0)
    # then it was pinged first, as a checkout from the pool would have been
    assert driver[0] == ";", driver
    assert driver.count(";") == 1, driver


async def _alone(task_id: int, notify: dict | None = None):  # noqa: ANN202
    """complete_alone on a driver connection of its own, as the run's end sends it."""
    from app.core.db import get_engine
    from app.models import TaskStatus
    from app.tasks.lifecycle import EndedTask, complete_alone

    async with get_engine().connect() as conn:
        driver = (await conn.get_raw_connection()).driver_connection
        return await complete_alone(driver, EndedTask(
            id=task_id, status=TaskStatus.completed, attempts=1, notify=notify, github=None),
            summary="s", finished_by="m")


async def test_the_one_statement_end_and_a_cancel_at_once_end_it_once(
        app_client, enqueued, llm):
    from app.models import TaskStatus
    from app.tasks.lifecycle import close_task

    # given a task holding a slot of its agent
    held = await holding_slot(await _noop(app_client, llm))

    async def cancel() -> list:
        async with session_scope() as session:
            return await close_task(session, held.task_id, TaskStatus.cancelled, error="stop")

    # when the run's end and a person's cancel arrive at the same moment
    completed, cancelled = await asyncio.gather(_alone(held.task_id), cancel())
    # then one of them ended it: one status event, the slot given back once
    assert (completed is None) != (cancelled == [])
    await assert_ended_once(app_client, held)


async def test_the_one_statement_end_leaves_a_task_that_notifies_to_the_general_end(
        app_client, enqueued, llm):
    # given a task whose owner asked for an email at its end after the run read the task
    task_id = await _noop(app_client, llm, notify={"email": ["ann@example.com"]})
    # when the one-statement end is tried with what the run read (no one to notify)
    # then it does not match, and the task is left as it was for the general end
    assert await _alone(task_id, notify=None) is None
    task = (await app_client.get(f"/tasks/{task_id}")).json()
    assert task["status"] == "assigned"


async def test_the_last_step_with_an_end_that_does_not_match_is_not_written(
        app_client, enqueued, llm):
    from app.core.db import get_engine
    from app.models import Task, TaskStatus
    from app.run import steps_postgres
    from app.run.step_changes import StepChanges
    from app.tasks.lifecycle import EndedTask

    # given a task whose owner asked for an email at its end after the run read the task
    task_id = await _noop(app_client, llm, notify={"email": ["ann@example.com"]})
    async with session_scope() as session:
        before = await session.get(Task, task_id)
        assert before is not None
    # when the run's last step and the one-statement end are tried with what the run read
    changes = StepChanges(events=[("phase", {"phase": "review"})], calls=1, prompt_tokens=10,
                          completion_tokens=5, cost_usd=0.0, model_used="m", phase="review",
                          usage={}, peak_rss_kb=None, checkpoint=None)
    async with get_engine().connect() as conn:
        driver = (await conn.get_raw_connection()).driver_connection
        done = await steps_postgres.write_and_complete(
            driver, changes, EndedTask(id=task_id, status=TaskStatus.completed, attempts=1,
                                       notify=None, github=None),
            summary="s", finished_by="m")
    # then nothing was written: the step is left to its own write, the end to the general one
    assert done is None
    async with session_scope() as session:
        after = await session.get(Task, task_id)
    assert after is not None
    assert (after.status, after.last_seq, after.steps, after.phase) == (
        before.status, before.last_seq, before.steps, before.phase)
