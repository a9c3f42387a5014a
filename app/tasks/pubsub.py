"""Committed task events on Redis pub/sub, from whichever process committed them.

    taskbench:db<N>:task:<id>    every event of one task
    taskbench:db<N>:status       status changes of every task (the admins' global feed)

<N> is the Redis database number of the pub/sub URL: channels are global to a Redis server, so
two installations (or two test runs) sharing one server on different database numbers never
see each other's events. Workers, the API and any other process publish here after commit
(`app.tasks.events.publish`); API processes listen (app.api.live) and fan out in memory.

Publishing is best effort and never holds up the caller for long: the event log is the truth,
followers re-read it on a gap or when idle. After a failed publish, Redis is left alone for
`RETRY_AFTER_S` so an outage costs the hot path one short timeout, not one per event.
"""

from __future__ import annotations

import functools
import json
import logging
import os
import threading
import time
from typing import Any
from urllib.parse import urlsplit

from app.core.config import get_settings
from app.core.sockets import has_input
from app.models import TaskEvent

log = logging.getLogger(__name__)
JSON_KEY = "_json"  # cache of the serialised event, shared by every follower
SOCKET_TIMEOUT_S = 0.5
RETRY_AFTER_S = 2.0

_by_url: dict[str, _Publisher] = {}
_down_until: dict[str, float] = {}
_lock = threading.Lock()


@functools.cache
def namespace(url: str) -> str:
    """`taskbench:db<N>:` for a Redis URL (database 0 when the URL names none)."""
    path = urlsplit(url).path.strip("/")
    return f"taskbench:db{int(path) if path.isdigit() else 0}:"


def task_channel(url: str, task_id: int | str) -> str:
    return f"{namespace(url)}task:{task_id}"


def status_channel(url: str) -> str:
    return f"{namespace(url)}status"


def payload(event: TaskEvent) -> dict[str, Any]:
    """An event as clients see it (the shape of EventPublic); with its JSON already made when
    its data's is (a fitted event: app.tasks.events.Fitted), the data not serialised again."""
    out = {"task_id": event.task_id, "seq": event.seq, "type": event.type,
           "data": event.data, "created_at": event.created_at.isoformat()}
    text = getattr(event.data, "text", None)
    if isinstance(text, str):
        head = json.dumps({k: v for k, v in out.items() if k != "data"})
        out[JSON_KEY] = f'{head[:-1]}, "data": {text}}}'
    return out


def encoded(event: dict[str, Any]) -> str:
    """The event as JSON, serialised once however many clients follow it."""
    cached = event.get(JSON_KEY)
    if cached is None:
        cached = json.dumps({k: v for k, v in event.items() if k != JSON_KEY}, default=str)
        event[JSON_KEY] = cached
    return cached


class _Publisher:
    """One connection to Redis per URL (and process) that only publishes, with its replies
    turned off (CLIENT REPLY OFF): a flush's events go out in one write and nothing is waited
    for or read back, where a pipeline also waited for, read and parsed a reply per event.

    A connection Redis has closed (a restart) is readable at EOF: that is checked before each
    write, and a new connection made, so the first events after an outage are not written
    into a dead socket."""

    def __init__(self, url: str) -> None:
        import redis

        self._pool = redis.ConnectionPool.from_url(
            url, socket_timeout=SOCKET_TIMEOUT_S, socket_connect_timeout=SOCKET_TIMEOUT_S)
        self._conn: Any = None
        self._pid = 0

    def send(self, commands: list[tuple[str, ...]]) -> None:
        conn = self._conn if self._pid == os.getpid() else None  # not a forked parent's
        if conn is not None and self._closed(conn):
            conn = None
        if conn is None:
            conn = self._conn = self._pool.make_connection()
            self._pid = os.getpid()
            conn.connect()
            conn.send_command("CLIENT", "REPLY", "OFF")  # Redis sends no reply to this either
        try:
            conn.send_packed_command(conn.pack_commands(commands), check_health=False)
        except Exception:
            self._conn = None
            conn.disconnect()
            raise

    @staticmethod
    def _closed(conn: Any) -> bool:
        # nothing is ever sent back on this connection: readable means EOF (or an error). One
        # poll of the socket (redis-py's can_read set its timeout and tried a read: ~4 calls
        # into the kernel before every publish)
        readable = has_input(getattr(conn, "_sock", None))
        if readable:
            conn.disconnect()
        return readable


def _publisher(url: str) -> _Publisher:
    publisher = _by_url.get(url)
    if publisher is None:
        publisher = _by_url[url] = _Publisher(url)
    return publisher


def publish_payloads(url: str, events: list[dict[str, Any]]) -> bool:
    """Publish events (payload dicts) in one write; False when Redis did not take them."""
    if not events or time.monotonic() < _down_until.get(url, 0.0):
        return False
    commands: list[tuple[str, ...]] = []
    for data in events:
        raw = encoded(data)
        commands.append(("PUBLISH", task_channel(url, data["task_id"]), raw))
        if data["type"] == "status":
            commands.append(("PUBLISH", status_channel(url), raw))
    try:
        with _lock:
            _publisher(url).send(commands)
    except Exception:  # noqa: BLE001 - live streams are best effort; the log is the truth
        _down_until[url] = time.monotonic() + RETRY_AFTER_S
        log.warning("publishing %d event(s) to Redis failed; followers will re-read the log",
                    len(events), exc_info=True)
        return False
    _down_until.pop(url, None)
    return True


def publish_committed(events: list[TaskEvent]) -> None:
    """Publish committed events when this installation has Redis for pub/sub."""
    url = get_settings().pubsub_redis_url
    if url and events:
        publish_payloads(url, [payload(e) for e in events])
