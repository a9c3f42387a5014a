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

log = logging.getLogger(__name__)
TASK_CHANNEL = "taskbench:task:"
STATUS_CHANNEL = "taskbench:status"
LOG_BATCH = 500
JSON_KEY = "_json"  # cache of the serialised event, shared by every follower


@dataclass
class Item:
    """One thing a follower sends: an `event`, a `ping` (idle), or `overflow` (resume later)."""

    kind: str
    data: dict[str, Any] = field(default_factory=dict)


def payload(event: TaskEvent) -> dict[str, Any]:
    """An event as clients see it (the shape of EventPublic)."""
    return {"task_id": event.task_id, "seq": event.seq, "type": event.type,
            "data": event.data, "created_at": event.created_at.isoformat()}


def encoded(event: dict[str, Any]) -> str:
    """The event as JSON, serialised once however many clients follow it."""
    cached = event.get(JSON_KEY)
    if cached is None:
        cached = json.dumps({k: v for k, v in event.items() if k != JSON_KEY}, default=str)
        event[JSON_KEY] = cached
    return cached


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
        async with self._start_lock:
            if self._source is None or self._source.done():
                self._source = await _start_source(self)
        return sub

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


async def _start_source(hub: Hub) -> asyncio.Task[None]:
    """Start the Redis listener or the table poller; returns once it cannot miss an event."""
    url = get_settings().pubsub_redis_url
    if url:
        import redis.asyncio as aioredis

        client = aioredis.Redis.from_url(url)
        pubsub = client.pubsub()
        await pubsub.psubscribe(TASK_CHANNEL + "*")
        await pubsub.subscribe(STATUS_CHANNEL)
        return asyncio.create_task(_listen(hub, client, pubsub))
    async with session_factory()() as session:
        last_id = (await session.exec(select(func.max(TaskEvent.id)))).one() or 0
    return asyncio.create_task(_poll(hub, int(last_id)))


async def _listen(hub: Hub, client: Any, pubsub: Any) -> None:
    """Redis → hub, until no one follows anything here."""
    try:
        while hub.has_subscribers():
            message = await pubsub.get_message(ignore_subscribe_messages=True, timeout=1.0)
            if not message:
                continue
            event = json.loads(message["data"])
            from_status = message["channel"] == STATUS_CHANNEL.encode()
            hub.deliver(event, task=not from_status, status=from_status)
    except Exception:  # noqa: BLE001 - followers fall back to their idle re-read of the log
        log.warning("redis event listener stopped", exc_info=True)
    finally:
        with contextlib.suppress(Exception):
            await pubsub.aclose()
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


_redis_clients: dict[str, Any] = {}


def _publish_event(event: TaskEvent) -> None:
    """The publisher app.tasks.events calls after commit: local hubs first, then Redis."""
    data = payload(event)
    with _hubs_lock:
        hubs = list(_hubs.values())
    for hub in hubs:
        with contextlib.suppress(RuntimeError):  # that loop has closed
            hub.loop.call_soon_threadsafe(hub.deliver, data)
    url = get_settings().pubsub_redis_url
    if url:
        _redis_publish(url, data)


def _redis_publish(url: str, data: dict[str, Any]) -> None:
    import redis

    client = _redis_clients.get(url)
    if client is None:
        client = _redis_clients[url] = redis.Redis.from_url(url, socket_timeout=2)
    raw = encoded(data)
    client.publish(f"{TASK_CHANNEL}{data['task_id']}", raw)
    if data["type"] == "status":
        client.publish(STATUS_CHANNEL, raw)


add_publisher(_publish_event)


async def read_log(task_id: int, after: int, limit: int = LOG_BATCH) -> list[dict[str, Any]]:
    async with session_factory()() as session:
        rows = await list_events(session, task_id, after=after, limit=limit)
    return [payload(r) for r in rows]


async def follow(
    task_id: int, *, after: int = 0, idle_s: float = 15.0
) -> AsyncGenerator[Item, None]:
    """Every event of a task after `after`, in order and once each, then live ones forever."""
    hub = get_hub()
    sub = await hub.subscribe(task_id)
    last = after
    try:
        while True:
            rows = await read_log(task_id, last)
            for row in rows:
                last = row["seq"]
                yield Item("event", row)
            if len(rows) == LOG_BATCH:
                continue
            while (item := await _next_live(sub, last, idle_s)) is not None:
                yield item
                if item.kind == "overflow":
                    return
                if item.kind == "ping":
                    break  # idle: re-read the log in case a publish was lost
                last = item.data["seq"]
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
        if event["seq"] <= last:
            continue
        if event["seq"] > last + 1:
            return None
        return Item("event", event)


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
