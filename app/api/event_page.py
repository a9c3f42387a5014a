"""One page of a task's event log as the JSON body of `GET /tasks/{id}/events`.

A page is up to 1,000 events. Read as ORM objects, checked into `EventPublic` models and checked
again against the response model, a 500-event page made ~10,000 short-lived Python objects: CPU,
and work for the garbage collector, whose full passes were the page times' p99 spikes. Here the
rows come from a Core SELECT of the five public columns and pydantic-core serialises them in one
call, with the same JSON as `EventsPublic` (the response model the route still documents).
"""

from __future__ import annotations

from typing import Any

from pydantic import TypeAdapter
from sqlalchemy import select
from sqlalchemy.ext.asyncio import AsyncSession

from app.models import TaskEvent, table

_EVENTS = table(TaskEvent)
_COLUMNS = (_EVENTS.c.task_id, _EVENTS.c.seq, _EVENTS.c.type, _EVENTS.c.data,
            _EVENTS.c.created_at)
# plain dicts: pydantic-core serialises what it finds (datetimes as the models do)
_JSON = TypeAdapter(dict[str, Any])


async def page_json(session: AsyncSession, task_id: int, *, after: int, limit: int,
                    last_seq: int) -> bytes:
    """The events of `task_id` after `after` (at most `limit`), as the EventsPublic JSON."""
    rows = (await session.execute(
        select(*_COLUMNS).where(_EVENTS.c.task_id == task_id, _EVENTS.c.seq > after)
        .order_by(_EVENTS.c.seq).limit(limit)
    )).all()
    events = [{"task_id": r[0], "seq": r[1], "type": r[2], "data": r[3], "created_at": r[4]}
              for r in rows]
    return _JSON.dump_json({"data": events, "count": len(events), "last_seq": last_seq})
