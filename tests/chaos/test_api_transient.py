"""The API under a dropped database connection (issue 17, #3): requests that can be repeated
safely are retried and succeed; the rest get 503 with Retry-After — never a 500."""

from __future__ import annotations

import pytest
from sqlalchemy import event

from tests.chaos.test_db_drop import DropOnce

pytestmark = pytest.mark.parametrize("db_url", ["postgres"], indirect=True)


async def _with_drop(marker: str, nth: int, call):  # type: ignore[no-untyped-def]
    from app.core.db import get_engine

    drop = DropOnce(marker, nth)
    event.listen(get_engine().sync_engine, "before_cursor_execute", drop)
    try:
        return await call(), drop
    finally:
        event.remove(get_engine().sync_engine, "before_cursor_execute", drop)


async def test_a_read_that_loses_its_connection_is_retried(app_client) -> None:
    await app_client.post("/tasks", json={"title": "t", "complexity": 2})
    resp, drop = await _with_drop("FROM task", 1, lambda: app_client.get("/tasks"))
    assert drop.fired, "the connection was never dropped: the test proves nothing"
    assert resp.status_code == 200, resp.text
    assert len(resp.json()["data"]) == 1


async def test_a_submission_with_a_key_is_retried_and_made_once(app_client) -> None:
    resp, drop = await _with_drop("INSERT INTO task ", 1, lambda: app_client.post(
        "/tasks", json={"title": "once", "complexity": 2}, headers={"Idempotency-Key": "a1"}))
    assert drop.fired
    assert resp.status_code == 201, resp.text
    listed = (await app_client.get("/tasks")).json()["data"]
    assert [t["title"] for t in listed] == ["once"]


async def test_a_submission_without_a_key_is_a_503_the_client_may_retry(app_client) -> None:
    resp, drop = await _with_drop("INSERT INTO task ", 1, lambda: app_client.post(
        "/tasks", json={"title": "maybe", "complexity": 2}))
    assert drop.fired
    assert resp.status_code == 503, resp.text
    assert resp.headers["retry-after"] == "1" and "retry" in resp.json()["detail"]
    # and nothing half-made: the insert's transaction was rolled back with the connection
    assert (await app_client.get("/tasks")).json()["data"] == []
