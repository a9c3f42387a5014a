"""Outbox row state transitions; each is one conditional UPDATE in its own committed
transaction, so a sender that dies leaves every row in a state another sender can read.
The guarantee they add up to is described in app/integrations/outbox.py."""

from __future__ import annotations

import logging
import os
import socket
from datetime import timedelta
from typing import Any

from sqlalchemy import and_, or_, update
from sqlmodel import col, select

from app.core.config import Settings
from app.core.db import session_scope
from app.models import OutboxMessage, OutboxStatus, utcnow

log = logging.getLogger(__name__)
S = OutboxStatus


def backoff(attempts: int, settings: Settings) -> timedelta:
    """Delay before the next try: base·2^(attempts-1), capped."""
    delay = settings.outbox_retry_base_s * (2 ** max(0, attempts - 1))
    return timedelta(seconds=min(delay, settings.outbox_retry_max_s))


async def set_where(engine: Any, row_id: int, where: Any, **values: Any) -> bool:
    """One conditional UPDATE in its own committed transaction; True if it matched."""
    async with session_scope(engine) as session:
        result = await session.execute(
            update(OutboxMessage)
            .where(col(OutboxMessage.id) == row_id, where)
            .values(updated_at=utcnow(), **values)
        )
        return bool(result.rowcount)  # type: ignore[attr-defined]


async def expire_stale_sending(engine: Any, *, file_sink: bool) -> None:
    """Rows left in `sending` by a dead sender: resend to the file sink, never to SMTP."""
    now = utcnow()
    stale = and_(col(OutboxMessage.status) == S.sending, col(OutboxMessage.lease_until) < now)
    values: dict[str, Any] = (
        {"status": S.pending, "next_attempt_at": now}
        if file_sink
        else {
            "status": S.unconfirmed,
            "last_error": "sender stopped during SMTP DATA; not resent to avoid a duplicate",
        }
    )
    async with session_scope(engine) as session:
        await session.execute(update(OutboxMessage).where(stale).values(updated_at=now, **values))


async def claim(engine: Any, limit: int, settings: Settings, task_id: int | None) -> list[int]:
    """Claim up to `limit` due rows for this sender; each claim is an atomic UPDATE."""
    now = utcnow()
    due = or_(
        and_(col(OutboxMessage.status) == S.pending, col(OutboxMessage.next_attempt_at) <= now),
        and_(col(OutboxMessage.status) == S.claimed, col(OutboxMessage.lease_until) < now),
    )
    stmt = select(OutboxMessage.id).where(due).order_by(col(OutboxMessage.next_attempt_at))
    if task_id is not None:
        stmt = stmt.where(OutboxMessage.task_id == task_id)
    async with session_scope(engine) as session:
        found = (await session.exec(stmt.limit(limit))).all()
    candidates = [int(i) for i in found if i is not None]
    me = f"{socket.gethostname()}:{os.getpid()}"[:100]
    lease = now + timedelta(seconds=settings.outbox_lease_s)
    claimed: list[int] = []
    for row_id in candidates:
        if await set_where(
            engine,
            row_id,
            due,
            status=S.claimed,
            claimed_by=me,
            lease_until=lease,
            attempts=OutboxMessage.attempts + 1,
        ):
            claimed.append(row_id)
    return claimed


async def retry_later(
    engine: Any, row: OutboxMessage, error: str, settings: Settings, *, permanent: bool = False
) -> None:
    """Give a claimed row back (nothing was delivered) or fail it for good."""
    give_up = permanent or row.attempts >= settings.outbox_max_attempts
    values: dict[str, Any] = {"last_error": error[:2000], "lease_until": None}
    if give_up:
        values["status"] = S.failed
    else:
        values.update(status=S.pending, next_attempt_at=utcnow() + backoff(row.attempts, settings))
    await set_where(engine, row.id or 0, col(OutboxMessage.status) == S.claimed, **values)
    log.warning("outbox message %s %s: %s", row.id, "failed" if give_up else "deferred", error)


async def mark_sending(engine: Any, row: OutboxMessage) -> bool:
    return await set_where(
        engine, row.id or 0, col(OutboxMessage.status) == S.claimed, status=S.sending
    )


async def mark_sent(engine: Any, row: OutboxMessage) -> None:
    await set_where(
        engine,
        row.id or 0,
        col(OutboxMessage.status) == S.sending,
        status=S.sent,
        sent_at=utcnow(),
        lease_until=None,
        last_error=None,
    )


async def load_row(engine: Any, row_id: int) -> OutboxMessage | None:
    async with session_scope(engine) as session:
        return await session.get(OutboxMessage, row_id)


async def back_to_pending(engine: Any, row: OutboxMessage, error: str, settings: Settings) -> None:
    """DATA was refused with a reply code, so nothing was delivered: retry with backoff."""
    give_up = row.attempts >= settings.outbox_max_attempts
    await set_where(
        engine,
        row.id or 0,
        col(OutboxMessage.status) == S.sending,
        status=S.failed if give_up else S.pending,
        lease_until=None,
        last_error=error[:2000],
        next_attempt_at=utcnow() + backoff(row.attempts, settings),
    )


async def mark_unconfirmed(engine: Any, row: OutboxMessage, error: str) -> None:
    await set_where(
        engine,
        row.id or 0,
        col(OutboxMessage.status) == S.sending,
        status=S.unconfirmed,
        lease_until=None,
        last_error=error[:2000],
    )
    log.warning("outbox message %s unconfirmed: %s", row.id, error)
