"""Hearing PostgreSQL's notifications (LISTEN/NOTIFY) on one connection per event loop.

A run asks before every model call whether its task's inbox holds a message nobody has taken.
Reading the inbox each time is a round trip a step; the step's own write can answer instead
(app.run.steps returns the flag), but then the model call has to wait for that write. Here the
database tells: a trigger notifies channel `task_inbox` with the task's id at every message
inserted (migration 0013), and this process hears it on one connection of its own, kept
listening for as long as its event loop lives.

What is heard is trusted only while that connection is up. An `Ear` (one task's) is quiet when
its last look at the inbox (a read, or a step write's flag) found nothing, the listener was live
then and still is on the same connection, and no notification for the task came since. Anything
else (the connection lost or replaced, a notification, a look that found a message) makes it not
quiet, and the caller reads the inbox as it would without a listener.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections import Counter
from typing import Any

from sqlalchemy import make_url

log = logging.getLogger(__name__)
RETRY_AFTER_S = 5.0  # a listener that could not connect tries again no sooner than this
Mark = tuple[int, int]  # (connection epoch, notifications heard for the key)


class Listener:
    """One connection LISTENing on `channel`, counting the notifications of the keys watched."""

    def __init__(self, db_url: str, channel: str) -> None:
        self.db_url = db_url
        self.channel = channel
        self.loop = asyncio.get_running_loop()
        self.epoch = 0  # bumped at every connection: what an older one heard says nothing now
        self.live = False
        self.heard: Counter[str] = Counter()
        self.watching: Counter[str] = Counter()
        self._conn: Any = None
        self._failed_at = -RETRY_AFTER_S
        self._connecting = asyncio.Lock()

    async def ensure(self) -> bool:
        """Connected and listening (connecting now if not, unless a try failed just before)."""
        if self.live:
            return True
        async with self._connecting:
            if self.live or time.monotonic() - self._failed_at < RETRY_AFTER_S:
                return self.live
            try:
                await self._connect()
            except Exception as exc:  # noqa: BLE001 - without it the callers read, as before
                self._failed_at = time.monotonic()
                log.warning("not listening on %s (%s: %s); inboxes are read instead",
                            self.channel, type(exc).__name__, str(exc)[:200])
        return self.live

    async def _connect(self) -> None:
        import asyncpg

        url = make_url(self.db_url)
        conn = await asyncpg.connect(**url.translate_connect_args(username="user",
                                                                  database="database"),
                                     **dict(url.query))
        try:
            await conn.add_listener(self.channel, self._notified)
        except BaseException:
            await conn.close()
            raise
        conn.add_termination_listener(self._lost)
        self._conn = conn
        self.epoch += 1
        self.live = True

    def _notified(self, _conn: Any, _pid: int, _channel: str, payload: str) -> None:
        if payload in self.watching:
            self.heard[payload] += 1

    def _lost(self, conn: Any) -> None:
        if conn is self._conn:
            self.live = False
            self._conn = None

    def watch(self, key: str) -> Ear:
        self.watching[key] += 1
        return Ear(self, key)

    def unwatch(self, key: str) -> None:
        self.watching[key] -= 1
        if self.watching[key] <= 0:
            del self.watching[key]
            self.heard.pop(key, None)

    async def close(self) -> None:
        conn, self._conn, self.live = self._conn, None, False
        if conn is not None:
            with contextlib.suppress(Exception):
                await conn.close(timeout=2)


class Ear:
    """One key's notifications, as a run sees them between its looks."""

    def __init__(self, listener: Listener, key: str) -> None:
        self.listener = listener
        self.key = key
        self._clean: Mark | None = None  # the mark of the last look that found nothing

    def mark(self) -> Mark:
        """Taken just before a look: what `looked` compares with."""
        return (self.listener.epoch, self.listener.heard[self.key])

    def looked(self, before: Mark, found: bool) -> None:
        """A look that began at `before` found something (or could not tell), or nothing. It
        counts as clean only if nothing was heard and the connection stayed the same since."""
        if not found and self.listener.live and before == self.mark():
            self._clean = before

    def quiet(self) -> bool:
        """Nothing can be waiting that the last clean look did not see."""
        return self.listener.live and self._clean is not None and self._clean == self.mark()

    def close(self) -> None:
        self.listener.unwatch(self.key)


# one listener per (channel, database, event loop): a connection belongs to the loop it was made on
_listeners: dict[tuple[str, str, int], Listener] = {}


async def listener(db_url: str, channel: str) -> Listener | None:
    """This event loop's listener on `channel` of the PostgreSQL database at `db_url` (None on
    SQLite, or while it cannot connect)."""
    if not db_url.startswith("postgresql"):
        return None
    loop = asyncio.get_running_loop()
    for gone in [k for k, v in _listeners.items() if v.loop.is_closed()]:
        del _listeners[gone]  # its loop's end closed the socket: nothing left to close
    key = (channel, db_url, id(loop))
    found = _listeners.get(key)
    if found is None or found.loop is not loop:
        found = _listeners[key] = Listener(db_url, channel)
    return found if await found.ensure() else None


async def close_listeners() -> None:
    """Close this event loop's listeners (the others belong to other loops)."""
    loop = asyncio.get_running_loop()
    for key in [k for k, v in _listeners.items() if v.loop is loop]:
        await _listeners.pop(key).close()


def forget_listeners() -> None:
    """Drop inherited listeners without closing their connections (after a fork)."""
    _listeners.clear()
