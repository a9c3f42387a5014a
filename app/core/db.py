"""The database engine and session factory, shared by the API and the worker.

On SQLite (WAL, busy timeout) reads are deferred transactions that take no lock, and every
`session_scope()` begins with BEGIN IMMEDIATE, so a read-then-write transaction queues for the
write lock up front instead of failing with "database is locked" halfway. The rule that follows:
writes go through `session_scope()` (or `connection_scope()`, the same on a Core connection);
request sessions (SessionDep) read. PostgreSQL needs none of this: its row locks make each
conditional UPDATE atomic. On both, a request holds one pooled connection at a time: its
session's read ends (`end_read()`) before anything else takes a connection.

The hot paths of a run (a step's record, the inbox check, the lease keeper) use Core connections:
the same SQL for a fraction of the Python an ORM session costs (~1.8 ms for an empty one).

A step's record on SQLite is written by `inline_write()`: a plain sqlite3 connection on the event
loop's own thread. Through aiosqlite every statement is three or four hops to its thread and
back (~19 for a step, ~1 ms); inline it is the SQL alone (~0.3 ms, WAL without an fsync per
commit). It never waits: with another connection holding the write lock it raises
WriteLockBusy at once and the caller writes through the async engine instead, whose thread waits.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import threading
import time
from collections.abc import AsyncIterator, Iterator
from contextlib import asynccontextmanager, contextmanager
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event, make_url
from sqlalchemy import exc as sa_exc
from sqlalchemy.ext.asyncio import (
    AsyncConnection,
    AsyncEngine,
    async_sessionmaker,
    create_async_engine,
)
from sqlalchemy.orm import configure_mappers
from sqlalchemy.pool import NullPool
from sqlmodel.ext.asyncio.session import AsyncSession

from app.core.config import get_settings
from app.core.listen import close_listeners, forget_listeners
from app.core.sockets import has_input

# One engine per (url, thread): async connections belong to the event loop that made them.
_engines: dict[tuple[str, int], AsyncEngine] = {}
_inline: dict[str, Engine] = {}  # per SQLite url: plain sqlite3 connections, any thread
IMMEDIATE = "taskbench_sqlite_immediate"


class WriteLockBusy(Exception):
    """Another connection holds SQLite's write lock: an inline write does not wait for it."""


def is_sqlite(url: str) -> bool:
    return url.startswith("sqlite")


def upsert_insert(dialect: str) -> Any:
    """`insert` of the dialect named (with its on_conflict_do_update), importing that dialect
    only: PostgreSQL's (~2 MB, 19 modules) stays out of a process on SQLite."""
    if dialect == "postgresql":
        from sqlalchemy.dialects import postgresql

        return postgresql.insert
    from sqlalchemy.dialects import sqlite

    return sqlite.insert


def make_engine(url: str, *, pooled: bool = True) -> AsyncEngine:
    """An async engine for `url`, with the SQLite pragmas that make concurrent use safe."""
    kwargs: dict[str, Any] = {}
    if is_sqlite(url):
        kwargs["connect_args"] = {"timeout": 30}
        if not pooled:
            kwargs["poolclass"] = NullPool
    elif pooled:
        kwargs.update(pool_size=10, max_overflow=20)
    else:
        kwargs["poolclass"] = NullPool
    engine = create_async_engine(url, **kwargs)
    if is_sqlite(url):
        _sqlite_pragmas(engine)
    else:
        _ping_on_checkout(engine)
    return engine


def _ping_on_checkout(engine: AsyncEngine) -> None:
    """What `pool_pre_ping` does, in one round trip instead of three: asyncpg's ping through
    SQLAlchemy is BEGIN, `;`, ROLLBACK, on every checkout (each run, each request). A pooled
    connection the server dropped (a restart, an idle timeout) is found here and replaced
    before anyone uses it (SQLAlchemy's documented pessimistic disconnect handling: a checkout
    listener raising DisconnectionError); a new one needs no ping."""
    pool = engine.sync_engine.pool

    @event.listens_for(pool, "connect")
    def _new(_dbapi_conn: Any, record: Any) -> None:
        record.info[_FRESH] = True

    @event.listens_for(pool, "checkout")
    def _ping(dbapi_conn: Any, record: Any, _proxy: Any) -> None:
        if record.info.pop(_FRESH, False):
            return
        try:
            dbapi_conn.run_async(lambda driver: driver.fetchrow(";"))
        except Exception as exc:  # noqa: BLE001 - any failure: this connection is not usable
            raise sa_exc.DisconnectionError(f"pooled connection dropped: {exc}") from exc


_FRESH = "taskbench_fresh"


def _sqlite_pragmas(engine: AsyncEngine | Engine, *, inline: bool = False) -> None:
    sync_engine = engine.sync_engine if isinstance(engine, AsyncEngine) else engine

    @event.listens_for(sync_engine, "connect")
    def _on_connect(dbapi_conn: Any, _record: Any) -> None:
        dbapi_conn.isolation_level = None
        cur = dbapi_conn.cursor()
        cur.execute("PRAGMA journal_mode=WAL")
        cur.execute("PRAGMA synchronous=NORMAL")
        # inline: never wait for the lock, and leave WAL checkpoints (with their fsync) to the
        # connections that run in threads
        cur.execute(f"PRAGMA busy_timeout={0 if inline else 30000}")
        if inline:
            cur.execute("PRAGMA wal_autocheckpoint=0")
        cur.execute("PRAGMA foreign_keys=ON")
        cur.close()

    @event.listens_for(sync_engine, "begin")
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


def load_driver(url: str | None = None) -> None:
    """Import the database's SQLAlchemy dialect and driver and configure the models' mappers,
    connecting to nothing: what the first statement of a process would do. A worker does it
    before its pool forks, so each pool process does not at its first task (on PostgreSQL
    ~0.1 s of CPU a pool process, and pages of its own)."""
    make_url(url or get_settings().db_url).get_dialect().import_dbapi()
    configure_mappers()


def forget_engines() -> None:
    """Drop inherited engines without closing their connections (after a fork)."""
    _engines.clear()
    _inline.clear()
    _spares.clear()
    forget_listeners()


async def dispose_engines() -> None:
    """Close this thread's engines (others belong to other event loops), and the inline ones."""
    await close_listeners()
    await close_spares()
    me = threading.get_ident()
    for key in [k for k in _engines if k[1] == me]:
        await _engines.pop(key).dispose()
    for url in list(_inline):
        _inline.pop(url).dispose()


@contextmanager
def inline_write(engine: AsyncEngine) -> Iterator[Connection]:
    """A write transaction on the SQLite file of `engine`, run on the calling (event loop)
    thread; raises WriteLockBusy, rolled back, when the write lock is held elsewhere."""
    url = make_url(str(engine.url)).set(drivername="sqlite")
    key = url.render_as_string(hide_password=False)
    if key not in _inline:
        _inline[key] = create_engine(url, connect_args={"check_same_thread": False})
        _sqlite_pragmas(_inline[key], inline=True)
    try:
        with _inline[key].connect() as conn:
            conn = conn.execution_options(**{IMMEDIATE: True})
            with conn.begin():
                yield conn
    except sa_exc.OperationalError as exc:
        if isinstance(exc.orig, sqlite3.OperationalError) and (
                getattr(exc.orig, "sqlite_errorname", "").startswith("SQLITE_BUSY")):
            raise WriteLockBusy(str(exc.orig)) from exc
        raise


def session_factory(engine: AsyncEngine | None = None) -> async_sessionmaker[AsyncSession]:
    return async_sessionmaker(engine or get_engine(), class_=AsyncSession, expire_on_commit=False)


@asynccontextmanager
async def session_scope(engine: AsyncEngine | None = None) -> AsyncIterator[AsyncSession]:
    """A write transaction: commits on success, rolls back on error (IMMEDIATE on SQLite)."""
    engine = engine or get_engine()
    if is_sqlite(str(engine.url)):
        # on the engine, not the first connection: a transaction begun after a commit inside
        # the scope is IMMEDIATE too (a deferred one that reads, then writes, fails at once
        # with "database is locked" when another process wrote in between)
        engine = engine.execution_options(**{IMMEDIATE: True})
    async with session_factory(engine)() as session:
        try:
            yield session
            await session.commit()
        except BaseException:
            await session.rollback()
            raise


async def end_read(session: AsyncSession) -> None:
    """End `session`'s read transaction: its pooled connection goes back before the caller
    takes another (a write in `session_scope`, a render, a wait), so one request holds one
    connection at a time. Holding one while waiting for a second, as many requests as the
    pool has connections stalled each other out to the pool's timeout (503s). What was read
    stays loaded; the session's next read takes a connection and a fresh snapshot."""
    await session.commit()


class RunConnection:
    """The transactions of one run: inside `kept()` all on one connection, checked out at
    the first and given back at the end, so a step pays no pool checkout and (PostgreSQL) no
    ping round trip; outside it, on a pooled connection each, like `connection_scope`.

    On PostgreSQL the connection outlives the run: it is kept for the next run on the same
    event loop (a worker's pool process runs one task at a time), which so takes it with no
    pool checkout and no ping (one round trip a task of ~8). One that the server closed in
    between is seen closed once the loop has read its socket, and replaced; one that fails
    under a statement is dropped, as any kept connection is, and the caller's retry takes a
    fresh one.

    A transaction that fails drops the kept connection (it may be broken) and the next takes a
    fresh one; the callers retry transient failures (app.core.transient) as they would anyway.
    Transactions of one run queue for the connection rather than share it."""

    def __init__(self) -> None:
        self._conn: AsyncConnection | None = None
        self._keeping = False
        self._lock = asyncio.Lock()

    @asynccontextmanager
    async def kept(self) -> AsyncIterator[None]:
        self._keeping = True
        try:
            yield
        finally:
            self._keeping = False
            if not self._lock.locked():  # else the transaction under way drops it at its end
                conn, self._conn = self._conn, None
                if conn is None or not _keep_spare(conn):
                    self._conn = conn
                    await self._drop()

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncConnection]:
        async with self._connection() as conn, conn.begin():
            yield conn

    @asynccontextmanager
    async def statements(self) -> AsyncIterator[AsyncConnection]:
        """Statements that need no transaction around them (each is atomic on its own: one
        UPDATE … RETURNING, one read). On PostgreSQL inside `kept()` they run in autocommit on
        the kept connection: no BEGIN and COMMIT round trips. Elsewhere they are one
        transaction, like `transaction()`."""
        if not (self._keeping and get_engine().dialect.name == "postgresql"):
            async with self.transaction() as conn:
                yield conn
            return
        async with self._connection() as conn:
            await conn.execution_options(isolation_level="AUTOCOMMIT")
            async with conn.begin():  # SQLAlchemy's own bookkeeping: nothing is sent
                yield conn
            # not reached when a statement failed: the connection is dropped then
            await conn.execution_options(isolation_level=conn.default_isolation_level)

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncConnection]:
        """A read of one statement. On PostgreSQL inside `kept()`: in autocommit on the kept
        connection (no pool checkout, no ping, no BEGIN or COMMIT). On SQLite, or outside
        `kept()`, a pooled connection of its own, deferred: the kept one begins IMMEDIATE,
        and a read would queue for the write lock."""
        if self._keeping and get_engine().dialect.name != "sqlite":
            async with self.statements() as conn:
                yield conn
            return
        async with get_engine().connect() as conn:
            yield conn

    @asynccontextmanager
    async def driver(self) -> AsyncIterator[Any]:
        """The driver's own connection (asyncpg's) under the same connection, for a single
        statement that is its own transaction; no transaction is open on it."""
        async with self._connection() as conn:
            try:
                yield (await conn.get_raw_connection()).driver_connection
            except BaseException:
                # SQLAlchemy did not see this fail, so would give the connection back to the
                # pool as good: its state is unknown (cut, or mid-protocol), so it goes
                with contextlib.suppress(Exception):
                    await conn.invalidate()
                raise

    @asynccontextmanager
    async def _connection(self) -> AsyncIterator[AsyncConnection]:
        if not self._keeping:
            async with get_engine().connect() as conn:
                if conn.dialect.name == "sqlite":
                    await conn.execution_options(**{IMMEDIATE: True})
                yield conn
            return
        async with self._lock:
            if self._conn is None:
                self._conn = await _spare_connection()
            if self._conn is None:
                conn = await get_engine().connect()
                if conn.dialect.name == "sqlite":
                    await conn.execution_options(**{IMMEDIATE: True})
                self._conn = conn
            failed = True
            try:
                yield self._conn
                failed = False
            finally:
                if failed or not self._keeping:
                    await self._drop()

    async def _drop(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            with contextlib.suppress(Exception):
                await conn.close()


# PostgreSQL: per event loop, the connection the last run kept (and when), for the next run
_spares: dict[int, tuple[asyncio.AbstractEventLoop, AsyncConnection, float]] = {}
SPARE_TRUSTED_S = 1.0  # kept longer than this, it is pinged before use (as a checkout is)


def _keep_spare(conn: AsyncConnection) -> bool:
    """Keep a run's connection for the next run on this loop (PostgreSQL, when none is kept
    yet and it is idle); False: the caller gives it back."""
    loop = asyncio.get_running_loop()
    if (conn.dialect.name != "postgresql" or id(loop) in _spares or conn.closed
            or conn.invalidated or conn.in_transaction()
            or conn.engine is not get_engine()):
        return False
    _spares[id(loop)] = (loop, conn, time.monotonic())
    return True


async def _spare_connection() -> AsyncConnection | None:
    """The connection a run on this loop kept, if it is still open."""
    kept = _spares.pop(id(asyncio.get_running_loop()), None)
    if kept is None:
        return None
    loop, conn, since = kept
    if loop is not asyncio.get_running_loop():
        return None  # another loop's (its id reused after it closed): nothing to close it on
    if conn.engine is not get_engine():  # the database changed meanwhile
        with contextlib.suppress(Exception):
            await conn.close()
        return None
    driver = (await conn.get_raw_connection()).driver_connection
    if not await _still_open(driver, time.monotonic() - since > SPARE_TRUSTED_S):
        with contextlib.suppress(Exception):
            await conn.invalidate()
        return None
    return conn


async def _still_open(driver: Any, ping: bool) -> bool:
    """Whether a kept asyncpg connection is usable: not closed, and nothing waiting on its
    socket (an idle connection is sent nothing but the server's goodbye: its error, then the
    close, which a worker's loop, idle between tasks, has not read yet); pinged too if `ping`."""
    if driver is None or driver.is_closed():
        return False
    if has_input(driver._transport.get_extra_info("socket") if driver._transport else None):
        return False
    if ping:
        try:
            await driver.fetchrow(";")
        except Exception:  # noqa: BLE001 - any failure: this connection is not usable
            return False
    return True


async def close_spares() -> None:
    """Give back this loop's kept run connection (another loop's belongs to that loop)."""
    kept = _spares.pop(id(asyncio.get_running_loop()), None)
    if kept is not None and kept[0] is asyncio.get_running_loop():
        with contextlib.suppress(Exception):
            await kept[1].close()


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
