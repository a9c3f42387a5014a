"""Transient infrastructure errors (a dropped database connection, a locked SQLite file, a
broker that is restarting) and the one way a run retries them.

    Exception
    ├── sqlalchemy DBAPIError / OperationalError / InterfaceError   the database went away
    ├── ConnectionError, TimeoutError (OSError)                     the socket did
    └── kombu / redis OperationalError, ConnectionError             the broker did

None of these is a task's outcome: the run retries the step boundary that hit one, and when the
database stays away the task is handed back (its lease left to expire) and resumed from its
checkpoint later, never failed for it. The model's and the tools' own errors are not in here.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable, Callable
from typing import TypeVar

from sqlalchemy import exc as sa_exc

log = logging.getLogger(__name__)
T = TypeVar("T")
# About 20 s of backoff in all: a PostgreSQL failover or a restarted server fits in it.
ATTEMPTS = 8
BASE_DELAY_S = 0.1
MAX_DELAY_S = 5.0


def is_transient(exc: BaseException) -> bool:
    """Whether `exc` (or what it wraps) is the infrastructure failing, not the task."""
    seen: set[int] = set()
    current: BaseException | None = exc
    while current is not None and id(current) not in seen:
        seen.add(id(current))
        if isinstance(current, sa_exc.DBAPIError) and current.connection_invalidated:
            return True
        if isinstance(current, sa_exc.OperationalError | sa_exc.InterfaceError
                      | sa_exc.DisconnectionError | sa_exc.TimeoutError):
            return True
        if isinstance(current, ConnectionError | TimeoutError | BrokenPipeError):
            return True
        name = type(current).__name__
        module = type(current).__module__ or ""
        # asyncpg's, redis's and kombu's connection errors, without importing them here
        if module.startswith(("asyncpg", "redis", "kombu", "amqp")) and (
                "Connection" in name or "Operational" in name or "Interface" in name
                or "Timeout" in name):
            return True
        # asyncpg on a connection the server cut while it was idle ("another operation is in
        # progress"): the connection is dropped, the retry takes a fresh one
        if module.startswith("asyncpg") and name == "InternalClientError":
            return True
        current = current.__cause__ or current.__context__
    return False


async def retrying(op: Callable[[], Awaitable[T]], what: str, *, attempts: int = ATTEMPTS,
                   base_delay_s: float = BASE_DELAY_S) -> T:
    """Await `op()` again (with backoff) while it fails transiently; other errors, and the
    last transient one, are raised. `op` must be one whole transaction (safe to repeat)."""
    delay = base_delay_s
    for attempt in range(1, attempts + 1):
        try:
            return await op()
        except Exception as exc:
            if attempt == attempts or not is_transient(exc):
                raise
            log.warning("%s failed (%s: %s); retry %d of %d in %.1fs", what,
                        type(exc).__name__, str(exc)[:200], attempt, attempts - 1, delay)
        await asyncio.sleep(delay)
        delay = min(delay * 2, MAX_DELAY_S)
    raise AssertionError("unreachable")


async def to_the_end(op: Awaitable[T], landed: list[T]) -> T:
    """Await `op` to its end even when the caller is cancelled meanwhile; its result is also
    appended to `landed`, and a cancellation that came meanwhile is raised once it has ended.

    A cancelled wait for a database's answer says nothing about the statement: the server may
    have committed it already. A write taken as not done would be written again (a step's
    events twice, its usage counted twice); `landed` says whether it was done."""
    running = asyncio.ensure_future(op)
    cancelled = False
    while not running.done():
        try:
            await asyncio.wait({running})
        except asyncio.CancelledError:
            cancelled = True
    if cancelled:
        if not running.cancelled() and running.exception() is None:
            landed.append(running.result())
        raise asyncio.CancelledError
    result = running.result()
    landed.append(result)
    return result
