"""Pooled connections held at once, per request: the shape that deadlocks a pool under load.

A request that holds one connection and asks for a second waits for a free one; with as many
such requests as the pool has connections, every one waits out the pool's timeout (a 503).
`PerRequest` wraps an ASGI app and counts, for each request (and any task it starts: they
share its context), how many connections it had checked out at once, from the pools' own
`checkout`/`checkin` events (every engine's pool, inline SQLite writes included); `holding`
counts any other block (a sweep) the same way.
"""

from __future__ import annotations

import contextvars
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from typing import Any

from sqlalchemy import event
from sqlalchemy.engine import Engine
from sqlalchemy.pool import Pool

_holder: contextvars.ContextVar[Held | None] = contextvars.ContextVar("held", default=None)
_HELD_BY = "tests.held_by"


@dataclass
class Held:
    """The connections of one request (or block): checked out now, and the most at once."""

    name: str
    now: int = 0
    most: int = 0


class PerRequest:
    """An ASGI app that counts each request's pooled connections (`requests`, in order)."""

    def __init__(self, app: Any) -> None:
        self.app = app
        self.requests: list[Held] = []

    async def __call__(self, scope: Any, receive: Any, send: Any) -> None:
        if scope["type"] not in ("http", "websocket"):
            await self.app(scope, receive, send)
            return
        with holding(f"{scope.get('method', 'WS')} {scope['path']}") as held:
            self.requests.append(held)
            await self.app(scope, receive, send)

    def more_than_one(self) -> list[str]:
        """Each request that held two or more connections at once, with how many."""
        return [f"{h.name}: {h.most}" for h in self.requests if h.most > 1]


@contextmanager
def holding(name: str) -> Iterator[Held]:
    """Count the connections the block (and any task it starts) holds at once."""
    held = Held(name)
    token = _holder.set(held)
    try:
        yield held
    finally:
        _holder.reset(token)


def _checkout(_dbapi: Any, record: Any, _proxy: Any) -> None:
    held = _holder.get()
    if held is not None:
        held.now += 1
        held.most = max(held.most, held.now)
        record.info[_HELD_BY] = held


def _checkin(_dbapi: Any, record: Any) -> None:
    held = record.info.pop(_HELD_BY, None) if record is not None else None
    if held is not None:
        held.now -= 1


@contextmanager
def counting() -> Iterator[None]:
    """Count checkouts of every pool while the block runs (for apps wrapped in PerRequest)."""
    event.listen(Pool, "checkout", _checkout)
    event.listen(Pool, "checkin", _checkin)
    try:
        yield
    finally:
        event.remove(Pool, "checkout", _checkout)
        event.remove(Pool, "checkin", _checkin)


@contextmanager
def _listening(target: Any, name: str, fn: Any, **kw: Any) -> Iterator[None]:
    """`fn` listens to the event `name` of `target` (every engine, every pool) for the block."""
    event.listen(target, name, fn, **kw)
    try:
        yield
    finally:
        event.remove(target, name, fn)


@contextmanager
def statements() -> Iterator[list[str]]:
    """Every SQL statement any engine of this process sends while the block runs (BEGIN,
    COMMIT and ROLLBACK left out), its first 70 characters."""
    seen: list[str] = []

    def count(conn, cursor, statement, params, context, executemany):  # noqa: ANN001
        if not statement.upper().startswith(("BEGIN", "COMMIT", "ROLLBACK")):
            seen.append(" ".join(statement.split())[:70])

    with _listening(Engine, "before_cursor_execute", count):
        yield seen


@contextmanager
def checkouts() -> Iterator[list[str]]:
    """Every pooled connection checked out (by any pool of this process) while the block runs."""
    seen: list[str] = []

    def checkout(dbapi_conn, record, proxy):  # noqa: ANN001
        seen.append(repr(record))

    with _listening(Pool, "checkout", checkout):
        yield seen


@contextmanager
def round_trips() -> Iterator[list[str]]:
    """Every query sent to PostgreSQL on a connection checked out while the block runs, or kept
    from the last run for the next (its first 70 characters): BEGIN, COMMIT, ROLLBACK and the
    checkout's ping included, which
    `statements` does not see (asyncpg's own query loggers, attached at checkout before any
    other listener runs on the connection)."""
    seen: list[str] = []
    logged: list[Any] = []

    def log(query: Any) -> None:
        seen.append(" ".join(query.query.split())[:70])

    def checkout(dbapi_conn, record, proxy):  # noqa: ANN001
        driver = dbapi_conn.driver_connection
        if hasattr(driver, "add_query_logger") and driver not in logged:
            driver.add_query_logger(log)
            logged.append(driver)

    from app.core import db

    # a run's connection, kept for the next run
    for _loop, kept, _since in list(db._spares.values()):
        driver = kept.sync_connection.connection.driver_connection  # type: ignore[union-attr]
        driver.add_query_logger(log)
        logged.append(driver)
    try:
        with _listening(Pool, "checkout", checkout, insert=True):
            yield seen
    finally:
        for driver in logged:
            driver.remove_query_logger(log)
