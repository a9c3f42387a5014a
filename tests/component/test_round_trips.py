"""What a worker's run of a no-op task sends to PostgreSQL, round trip by round trip (issue 15:
throughput). Each round trip is a write, a wake-up of the server and a wait: the checkout's
ping is one statement, only the end is a transaction (the lease and the reads are single
statements, atomic on their own), and a first run reads no checkpoint or journal it cannot
have."""

from __future__ import annotations

import pytest

from tests.factories import run_enqueued
from tests.factories.connections import round_trips, statements
from tests.fakes.llm_server import finish

pytestmark = pytest.mark.parametrize("db_url", ["postgres"], indirect=True)


async def _queue_noop(app_client, llm) -> None:  # noqa: ANN001
    llm.responder = lambda _req: finish("nothing to do")
    resp = await app_client.post("/tasks", json={"title": "t", "complexity": 1})
    assert resp.status_code == 201, resp.text


async def test_a_first_run_sends_no_round_trip_it_does_not_need(app_client, enqueued, llm):
    # given a warm worker process and a no-op task queued
    await _queue_noop(app_client, llm)
    assert await run_enqueued(enqueued) == ["ran"]
    await _queue_noop(app_client, llm)
    # when a worker runs it
    with round_trips() as driver, statements() as sent:
        assert await run_enqueued(enqueued) == ["ran"]
    # then its connection's checkout was pinged with one statement (asyncpg's ping through
    # SQLAlchemy is BEGIN, `;`, ROLLBACK)
    assert driver.count(";") == 1, driver
    assert [q for q in driver if q.startswith("ROLLBACK")] == [], driver
    # only the end was a transaction: the lease and the reads went without BEGIN and COMMIT
    assert len([q for q in driver if q.startswith("BEGIN")]) == 1, driver
    assert len([q for q in driver if q.startswith("COMMIT")]) == 1, driver
    # and with nothing to resume (the lease says so), no checkpoint or journal was read
    assert [q for q in driver if q.startswith("SELECT c.task_id")] == [], driver
    assert [s for s in sent if s.startswith("SELECT tool_intent.")] == [], sent
