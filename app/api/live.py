"""Live event streams: how committed events reach the clients following a task.

    any process: append_event → commit → publish()
        ├─► local hubs (this process, any thread)
        └─► Redis  taskbench:task:{id}  and  taskbench:status     (when pubsub_redis_url is set)
    API process: one Hub per event loop, fed by the Redis listener or, without Redis, by a
        poller reading task_event by id; it fans events out to bounded per-client queues.

`follow()` reads the log first and then its queue; per-task sequence numbers make duplicates
harmless (skipped) and gaps visible (re-read from the log), so the log stays the only truth.
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import json
import logging
import threading
from collections.abc import AsyncGenerator, AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func
from sqlmodel import col, select

from app.core.config import get_settings
from app.core.db import session_factory
from app.models import TaskEvent
from app.tasks.events import add_publisher, list_events
from app.tasks.pubsub import payload, status_channel, task_channel

log = logging.getLogger(__name__)
LOG_BATCH = 500
RESYNC: dict[str, Any] = {"_resync": True}  # queued to a follower: re-read the log now
DRAIN_BATCH = 2000  # Redis messages handled per listener turn at most


@dataclass
class Item:
    """One thing a follower sends: an `event`, a `ping` (idle), or `overflow` (resume later)."""

    kind: str
    data: dict[str, Any] = field(default_factory=dict)


class Subscription:
    """A client's bounded buffer; when it fills, the client is told to resume from the log."""

    def __init__(self, task_id: int | None, size: int) -> None:
        self.task_id = task_id
        self.queue: asyncio.Queue[dict[str, Any]] = asyncio.Queue(maxsize=size)
        self.overflowed = False

    def offer(self, event: dict[str, Any]) -> None:
        if self.overflowed:
            return
        try:
            self.queue.put_nowait(event)
        except asyncio.QueueFull:
            self.overflowed = True


class Hub:
    """The subscriptions of one event loop and the single source that feeds them."""

    def __init__(self, loop: asyncio.AbstractEventLoop) -> None:
        self.loop = loop
        self.by_task: dict[int, set[Subscription]] = {}
        self.status_subs: set[Subscription] = set()
        self._source: asyncio.Task[None] | None = None
        self._start_lock = asyncio.Lock()

    def has_subscribers(self) -> bool:
        return bool(self.by_task or self.status_subs)

    async def subscribe(self, task_id: int | None) -> Subscription:
        """Register before reading the log, so nothing committed afterwards is missed."""
        sub = Subscription(task_id, get_settings().stream_queue_size)
        if task_id is None:
            self.status_subs.add(sub)
        else:
            self.by_task.setdefault(task_id, set()).add(sub)
        try:
            async with self._start_lock:
                if self._source is None or self._source.done():
                    self._source = await _start_source(self)
        except BaseException:  # cancelled (its client went) or failed: not left subscribed
            self.unsubscribe(sub)
            raise
        return sub

    async def stop(self) -> None:
        """End the source (cancelled, and awaited while the loop still runs)."""
        source, self._source = self._source, None
        if source is None or source.done():
            return
        source.cancel()
        with contextlib.suppress(asyncio.CancelledError):
            await source

    def unsubscribe(self, sub: Subscription) -> None:
        if sub.task_id is None:
            self.status_subs.discard(sub)
            return
        subs = self.by_task.get(sub.task_id, set())
        subs.discard(sub)
        if not subs:
            self.by_task.pop(sub.task_id, None)

    def deliver(self, event: dict[str, Any], *, task: bool = True, status: bool = True) -> None:
        """Offer one event to its followers (runs on this hub's loop)."""
        if task:
            for sub in list(self.by_task.get(event["task_id"], ())):
                sub.offer(event)
        if status and event["type"] == "status":
            for sub in list(self.status_subs):
                sub.offer(event)

    def resync(self) -> None:
        """Tell every task follower to re-read its log (live events may have been missed)."""
        for subs in list(self.by_task.values()):
            for sub in list(subs):
                sub.offer(RESYNC)


_hubs: dict[int, Hub] = {}
_hubs_lock = threading.Lock()


def get_hub() -> Hub:
    """This event loop's hub (uvicorn in a thread and a test's loop each get their own)."""
    loop = asyncio.get_running_loop()
    with _hubs_lock:
        for key in [k for k, h in _hubs.items() if h.loop.is_closed()]:
            del _hubs[key]
        hub = _hubs.get(id(loop))
        if hub is None or hub.loop is not loop:
            hub = _hubs[id(loop)] = Hub(loop)
        return hub


async def close_hub() -> None:
    """Stop this event loop's source (its API is shutting down): the poller's read or the
    listener's wait is cancelled and awaited here, while the loop runs and before the
    database's connections are closed, not cut off by the loop's own end with its query still
    running in the database's thread."""
    loop = asyncio.get_running_loop()
    with _hubs_lock:
        hub = _hubs.pop(id(loop), None)
    if hub is not None:
        await hub.stop()


async def _start_source(hub: Hub) -> asyncio.Task[None]:
    """Start the Redis listener or the table poller; returns once it cannot miss an event.

    The source serves every follower on this loop, so it runs in a context of its own, not
    in the request's that happened to start it (that request's trace span, its connections)."""
    url = get_settings().pubsub_redis_url
    own = contextvars.Context()
    if url:
        try:
            client, pubsub = await _subscribe(url)
        except Exception:  # noqa: BLE001 - Redis is down: the listener keeps trying
            log.warning("redis event listener could not subscribe; retrying", exc_info=True)
            client = pubsub = None
        return asyncio.create_task(_listen(hub, url, client, pubsub), context=own)
    async with session_factory()() as session:
        last_id = (await session.exec(select(func.max(TaskEvent.id)))).one() or 0
    return asyncio.create_task(_poll(hub, int(last_id)), context=own)


async def _subscribe(url: str) -> tuple[Any, Any]:
    import redis.asyncio as aioredis

    client = aioredis.Redis.from_url(url)
    pubsub = client.pubsub()
    await pubsub.psubscribe(task_channel(url, "*"))
    await pubsub.subscribe(status_channel(url))
    return client, pubsub


async def _listen(hub: Hub, url: str, client: Any, pubsub: Any) -> None:
    """Redis → hub, until no one follows anything here; reconnects after an outage (what was
    published meanwhile reaches followers through their gap or idle re-read of the log).

    Everything already received is delivered in one go before the loop is given back: one
    message per loop turn would let a thousand busy followers starve the listener."""
    status = status_channel(url).encode()
    backoff = 0.2
    while hub.has_subscribers():
        try:
            if pubsub is None:
                client, pubsub = await _subscribe(url)
                backoff = 0.2
                hub.resync()
            message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
            drained = 0
            while message and drained < DRAIN_BATCH:
                event = json.loads(message["data"])
                from_status = message["channel"] == status
                hub.deliver(event, task=not from_status, status=from_status)
                drained += 1
                message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=0)
        except Exception:  # noqa: BLE001 - followers re-read the log; this reconnects
            log.warning("redis event listener lost its connection; reconnecting", exc_info=True)
            await _close(client, pubsub)
            client = pubsub = None
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 2.0)
    await _close(client, pubsub)


async def _close(client: Any, pubsub: Any) -> None:
    with contextlib.suppress(Exception):
        if pubsub is not None:
            await pubsub.aclose()
        if client is not None:
            await client.aclose()


async def _poll(hub: Hub, last_id: int) -> None:
    """Table → hub: one indexed query per interval for all followers of this loop."""
    interval = get_settings().stream_poll_s
    try:
        while hub.has_subscribers():
            await asyncio.sleep(interval)
            async with session_factory()() as session:
                rows = (await session.exec(
                    select(TaskEvent).where(col(TaskEvent.id) > last_id)
                    .order_by(col(TaskEvent.id)).limit(2000)
                )).all()
            for row in rows:
                last_id = max(last_id, row.id or 0)
                hub.deliver(payload(row))
    except Exception:  # noqa: BLE001 - a new subscriber restarts the poller
        log.warning("event poller stopped", exc_info=True)


def _publish_event(event: TaskEvent) -> None:
    """The local publisher app.tasks.events calls after commit: this process's hubs (Redis is
    published to by app.tasks.pubsub, in every process)."""
    data = payload(event)
    with _hubs_lock:
        hubs = list(_hubs.values())
    for hub in hubs:
        with contextlib.suppress(RuntimeError):  # that loop has closed
            hub.loop.call_soon_threadsafe(hub.deliver, data)


add_publisher(_publish_event)


async def read_log(task_id: int, after: int, limit: int = LOG_BATCH) -> list[dict[str, Any]]:
    async with session_factory()() as session:
        rows = await list_events(session, task_id, after=after, limit=limit)
    return [payload(r) for r in rows]


async def follow(
    task_id: int, *, after: int = 0, idle_s: float = 15.0
) -> AsyncGenerator[Item, None]:
    """Every event of a task after `after`, in order and once each, then live ones forever."""
    async for batch in follow_batches(task_id, after=after, idle_s=idle_s):
        for item in batch:
            yield item


async def follow_batches(
    task_id: int, *, after: int = 0, idle_s: float = 15.0
) -> AsyncGenerator[list[Item], None]:
    """`follow`, in runs: whatever is already waiting comes as one list, so a stream writes it
    to its client in one send instead of one per event."""
    hub = get_hub()
    sub = await hub.subscribe(task_id)
    last = after
    try:
        while True:
            rows = await read_log(task_id, last)
            if rows:
                last = rows[-1]["seq"]
                yield [Item("event", row) for row in rows]
            if len(rows) == LOG_BATCH:
                continue
            while (item := await _next_live(sub, last, idle_s)) is not None:
                if item.kind != "event":
                    yield [item]
                    if item.kind == "overflow":
                        return
                    break  # idle: re-read the log in case a publish was lost
                batch = [item]
                last = item.data["seq"]
                while (more := _ready_live(sub, last)) is not None:
                    batch.append(more)
                    last = more.data["seq"]
                yield batch
    finally:
        hub.unsubscribe(sub)


async def _next_live(sub: Subscription, last: int, idle_s: float) -> Item | None:
    """The next live item after `last`; None on a gap, so the caller re-reads the log."""
    while True:
        if sub.overflowed and sub.queue.empty():
            return Item("overflow", {"resume_from": last})
        try:  # the fast path under load skips wait_for's timer
            event = sub.queue.get_nowait()
        except asyncio.QueueEmpty:
            try:
                event = await asyncio.wait_for(sub.queue.get(), timeout=idle_s)
            except TimeoutError:
                return Item("ping")
        if event is RESYNC:
            return None
        if event["seq"] <= last:
            continue
        if event["seq"] > last + 1:
            return None
        return Item("event", event)


def _ready_live(sub: Subscription, last: int) -> Item | None:
    """The next already-queued event if it is exactly the one after `last`, else None (a gap
    or anything unusual is left to `_next_live`, which knows what to do with it)."""
    while not sub.queue.empty():
        event = sub.queue._queue[0]  # type: ignore[attr-defined]  # peek: asyncio.Queue's deque
        if event is RESYNC:
            return None
        if event["seq"] <= last:
            sub.queue.get_nowait()
            continue
        if event["seq"] != last + 1:
            return None
        return Item("event", sub.queue.get_nowait())
    return None


async def follow_status(*, idle_s: float = 15.0) -> AsyncIterator[Item]:
    """Every task's status changes from now on (admins' global feed)."""
    hub = get_hub()
    sub = await hub.subscribe(None)
    seen: dict[int, int] = {}  # task id → last status seq sent: local and remote copies arrive
    try:
        while True:
            try:
                event = await asyncio.wait_for(sub.queue.get(), timeout=idle_s)
            except TimeoutError:
                yield Item("ping")
                continue
            if sub.overflowed:
                yield Item("overflow", {})
                return
            if event["seq"] <= seen.get(event["task_id"], 0):
                continue
            seen[event["task_id"]] = event["seq"]
            yield Item("event", event)
    finally:
        hub.unsubscribe(sub)
