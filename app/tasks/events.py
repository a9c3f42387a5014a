"""Append a task event, publish it, and read a task's event log.

The per-task sequence number comes from `task.last_seq`, bumped with an UPDATE … RETURNING in the
same transaction as the insert, so concurrent writers (the runner, the API's cancel, a message)
never collide and the log has no gaps.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime
from typing import Any

from sqlalchemy import insert, update
from sqlalchemy.ext.asyncio import AsyncConnection
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from app.core.redact import redact_obj
from app.models import Task, TaskEvent, table, utcnow
from app.tasks.pubsub import publish_committed

log = logging.getLogger(__name__)
MAX_EVENT_BYTES = 64_000

_publishers: list[Any] = []


def add_publisher(publish: Any) -> None:
    """Register `publish(event: TaskEvent)`, called after an event is committed (best effort)."""
    _publishers.append(publish)


class Fitted(dict[str, Any]):
    """An event's data as it is stored (redacted, JSON-safe, within MAX_EVENT_BYTES), with
    `text`, the JSON it was made from: what the database and pub/sub are sent (`data_json`).
    An event's data was serialised three times (to fit it, for the database, for pub/sub);
    it is once. Not to be changed once made: `text` would no longer say what it holds."""

    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        super().__init__(json.loads(text))
        self.text = text


def data_json(data: dict[str, Any]) -> str:
    """An event's data as JSON: its own text when it was fitted."""
    return data.text if isinstance(data, Fitted) else json.dumps(data, default=str)


def _fit(data: dict[str, Any]) -> Fitted:
    data = redact_obj(data)
    raw = json.dumps(data, default=str)
    if len(raw) <= MAX_EVENT_BYTES:
        return Fitted(raw)
    clipped = {k: (v[:2000] + "…[cut]" if isinstance(v, str) and len(v) > 2000 else v)
               for k, v in data.items()}
    raw = json.dumps(clipped, default=str)
    if len(raw) <= MAX_EVENT_BYTES:
        return Fitted(raw)
    return Fitted(json.dumps({"truncated": True, "preview": raw[:2000]}))


async def append_event(
    session: AsyncSession, task_id: int, type: str, data: dict[str, Any] | None = None
) -> TaskEvent:
    """Add one event to the task's log in the session's transaction (the caller commits)."""
    result = await session.execute(
        update(Task)
        .where(col(Task.id) == task_id)
        .values(last_seq=Task.last_seq + 1, updated_at=utcnow())
        .returning(col(Task.last_seq))
    )
    seq = result.scalar_one()
    event = TaskEvent(task_id=task_id, seq=seq, type=type, data=_fit(data or {}))
    session.add(event)
    await session.flush()
    return event


async def append_events(
    conn: AsyncSession | AsyncConnection, task_id: int, items: list[tuple[str, dict[str, Any]]],
    *, task_values: dict[str, Any] | None = None,
) -> list[TaskEvent]:
    """Add several events with one sequence bump and one INSERT (the caller commits).

    `task_values` are more columns of the task row to set in the same UPDATE (counters, usage),
    so a step's record costs one statement for the task and one for its events. Plain Core
    statements on the tables, so `conn` may be a session or a (cheaper) Core connection."""
    if not items and not task_values:
        return []
    result = await conn.execute(
        update(table(Task))
        .where(col(Task.id) == task_id)
        .values(last_seq=Task.last_seq + len(items), updated_at=utcnow(), **(task_values or {}))
        .returning(col(Task.last_seq))
    )
    return await insert_events(conn, task_id, result.scalar_one() - len(items) + 1, items)


INSERT_EVENTS = insert(table(TaskEvent))


def fitted(items: list[tuple[str, dict[str, Any]]]) -> list[tuple[str, dict[str, Any]]]:
    """Event items as they are stored: redacted, JSON-safe, within MAX_EVENT_BYTES."""
    return [(type, _fit(data or {})) for type, data in items]


def numbered_events(
    task_id: int, first: int, items: list[tuple[str, dict[str, Any]]], *,
    now: datetime | None = None,
) -> list[TaskEvent]:
    """`fitted` items as events numbered from `first` (sequence numbers the caller has taken)."""
    now = now or utcnow()
    # model_construct: every field is given and already valid (the table model's own __init__
    # took ~40 µs an event)
    return [TaskEvent.model_construct(id=None, task_id=task_id, seq=first + i, type=type,
                                      data=data, created_at=now)
            for i, (type, data) in enumerate(items)]


def event_rows(events: list[TaskEvent]) -> list[dict[str, Any]]:
    """The rows of INSERT_EVENTS, run as a Core executemany: no ORM flush, no RETURNING."""
    return [{"task_id": e.task_id, "seq": e.seq, "type": e.type, "data": e.data,
             "created_at": e.created_at} for e in events]


async def insert_events(
    conn: AsyncSession | AsyncConnection, task_id: int, first: int,
    items: list[tuple[str, dict[str, Any]]],
) -> list[TaskEvent]:
    """Insert `items` numbered from `first` (sequence numbers the caller has taken)."""
    events = numbered_events(task_id, first, fitted(items))
    if events:
        await conn.execute(INSERT_EVENTS, event_rows(events))
    return events


def publish(events: list[TaskEvent]) -> None:
    """Hand committed events to this process's live publishers (the API's in-memory hubs),
    then to Redis pub/sub when configured, so followers in other processes see them too."""
    for event in events:
        for pub in _publishers:
            try:
                pub(event)
            except Exception:  # noqa: BLE001 - live streams are best effort; the log is the truth
                log.warning("event publisher failed", exc_info=True)
    publish_committed(events)


async def list_events(
    session: AsyncSession, task_id: int, *, after: int = 0, limit: int = 500,
    types: list[str] | None = None,
) -> list[TaskEvent]:
    stmt = (
        select(TaskEvent)
        .where(TaskEvent.task_id == task_id, TaskEvent.seq > after)
        .order_by(col(TaskEvent.seq))
        .limit(limit)
    )
    if types:
        stmt = stmt.where(col(TaskEvent.type).in_(types))
    return list((await session.exec(stmt)).all())
