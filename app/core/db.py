"""The database engine and session factory, shared by the API and the worker.

On SQLite (WAL, busy timeout) reads are deferred transactions that take no lock, and every
`session_scope()` begins with BEGIN IMMEDIATE, so a read-then-write transaction queues for the
write lock up front instead of failing with "database is locked" halfway. The rule that follows:
writes go through `session_scope()` (or `connection_scope()`, the same on a Core connection);
request sessions (SessionDep) read. PostgreSQL needs none of this: its row locks make each
conditional UPDATE atomic.

The hot paths of a run (a step's record, the inbox check, the lease keeper) use Core connections:
the same SQL for a fraction of the Python an ORM session costs (~1.8 ms for an empty one).
"""

from __future__ import annotations

import threading
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from typing import Any

from sqlalchemy import event
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.pool import NullPool
from sqlmodel.ext.asyncio.session import AsyncSession

from app.core.config import get_settings

# One engine per (url, thread): async connections belong to the event loop that made them.
_engines: dict[tuple[str, int], AsyncEngine] = {}
IMMEDIATE = "taskbench_sqlite_immediate"


def is_sqlite(url: str) -> bool:
    return url.startswith("sqlite")


def make_engine(url: str, *, pooled: bool = True) -> AsyncEngine:
    """An async engine for `url`, with the SQLite pragmas that make concurrent use safe."""
    kwargs: dict[str, Any] = {}
    if is_sqlite(url):
        kwargs["connect_args"] = {"timeout": 30}
        if not pooled:
            kwargs["poolclass"] = NullPool
    else:
        kwargs["pool_pre_ping"] = True
        if pooled:
            kwargs.update(pool_size=10, max_overflow=20)
        else:
            kwargs["poolclass"] = NullPool
    engine = create_async_engine(url, **kwargs)
    if is_sqlite(url):
        _sqlite_pragmas(engine)
    return engine


def _sqlite_pragmas(engine: AsyncEngine) -> None:
    @event.listens_for(engine.sync_engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        cur.execute("PRAGMA busy_timeout=30000")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.close()

    @event.listens_for(engine.sync_engine, "begin")
    def _on_begin(conn: Any) -> None:
        immediate = conn.get_execution_options().get(IMMEDIATE, False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")


def get_engine(url: str | None = None) -> AsyncEngine:
    """The process-wide engine for `url` (default: the configured database)."""
    url = url or get_settings().db_url
    key = (url, threading.get_ident())
    if key not in _engines:
        _engines[key] = make_engine(url)
    return _engines[key]


def forget_engines() -> None:
    """Drop inherited engines without closing their connections (after a fork)."""
    _engines.clear()


async def dispose_engines() -> None:
    """Close this thread's engines (others belong to other event loops)."""
    me = threading.get_ident()
    for key in [k for k in _engines if k[1] == me]:
        await _engines.pop(key).dispose()


def session_factory(engine: AsyncEngine | None = None) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine or get_engine(), class_=AsyncSession, expire_on_commit=False)


@asynccontextmanager
async def session_scope(engine: AsyncEngine | None = None) -> AsyncIterator[AsyncSession]:
    """A write transaction: commits on success, rolls back on error (IMMEDIATE on SQLite)."""
    engine = engine or get_engine()
    async with session_factory(engine)() as session:
        if is_sqlite(str(engine.url)):
            await session.connection(execution_options={IMMEDIATE: True})
        try:
            yield session
            await session.commit()
        except BaseException:
            await session.rollback()
            raise


@asynccontextmanager
async def connection_scope(engine: AsyncEngine | None = None) -> AsyncIterator[AsyncConnection]:
    """A write transaction on a Core connection: commits on success, rolls back on error
    (IMMEDIATE on SQLite, like `session_scope`)."""
    engine = engine or get_engine()
    async with engine.connect() as conn:
        if conn.dialect.name == "sqlite":
            await conn.execution_options(**{IMMEDIATE: True})
        async with conn.begin():
            yield conn
