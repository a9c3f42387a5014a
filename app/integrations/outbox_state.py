"""Outbox row state transitions; each is one conditional UPDATE in its own committed
transaction, so a sender that dies leaves every row in a state another sender can read.
The guarantee they add up to is described in app/integrations/outbox.py."""

from __future__ import annotations

import logging
import os
import secrets
import socket
from datetime import UTC, timedelta
from typing import Any, NamedTuple

from sqlalchemy import and_, func, or_, update
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
    stale = stale_sending(now)
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


WEBHOOK = "webhook"  # the row kind sent by app/integrations/webhook.py; every other kind is email


def stale_sending(now: Any) -> Any:
    """Rows a sender left in `sending` whose lease ran out by `now` (a value or a bind
    parameter)."""
    return and_(col(OutboxMessage.status) == S.sending, col(OutboxMessage.lease_until) < now)


def due_at(now: Any) -> Any:
    """Rows of either kind a sender may claim at `now`: pending and due, or claimed by a sender
    whose claim ran out."""
    return or_(
        and_(col(OutboxMessage.status) == S.pending, col(OutboxMessage.next_attempt_at) <= now),
        and_(col(OutboxMessage.status) == S.claimed, col(OutboxMessage.lease_until) < now),
    )


class Claimed(NamedTuple):
    """One row this sender claimed: its id and the claim's own mark (sender and attempt), so a
    claim that lapsed and was taken over is recognised as no longer ours."""

    id: int
    by: str
    attempt: int


async def claim(engine: Any, limit: int, settings: Settings, task_id: int | None, *,
                webhooks: bool = False) -> list[Claimed]:
    """Claim up to `limit` due rows (email, or webhooks) for this sender; each claim is an
    atomic UPDATE, marked with a token unique to this call."""
    now = utcnow()
    kind = col(OutboxMessage.kind)
    due = and_(kind == WEBHOOK if webhooks else kind != WEBHOOK, due_at(now))
    stmt = select(OutboxMessage.id).where(due).order_by(col(OutboxMessage.next_attempt_at))
    if task_id is not None:
        stmt = stmt.where(OutboxMessage.task_id == task_id)
    async with session_scope(engine) as session:
        found = (await session.exec(stmt.limit(limit))).all()
    candidates = [int(i) for i in found if i is not None]
    me = f"{socket.gethostname()[:60]}:{os.getpid()}:{secrets.token_hex(6)}"
    lease = now + timedelta(seconds=settings.outbox_lease_s)
    claimed: list[Claimed] = []
    for row_id in candidates:
        async with session_scope(engine) as session:
            result = await session.execute(
                update(OutboxMessage).where(col(OutboxMessage.id) == row_id, due)
                .values(updated_at=utcnow(), status=S.claimed, claimed_by=me, lease_until=lease,
                        attempts=OutboxMessage.attempts + 1)
                .returning(col(OutboxMessage.attempts)))
            attempt = result.scalar_one_or_none()
        if attempt is not None:
            claimed.append(Claimed(row_id, me, int(attempt)))
    return claimed


def is_ours(row: OutboxMessage, claim_: Claimed) -> bool:
    """Whether the row as read now still carries this claim (not a later sender's)."""
    return row.claimed_by == claim_.by and row.attempts == claim_.attempt


async def retry_later(
    engine: Any, row: OutboxMessage, error: str, settings: Settings, *, permanent: bool = False,
    unreached: bool = False,
) -> None:
    """Give a claimed row back (nothing was delivered) or fail it for good.

    `unreached`: the mail server could not be reached at all, so the message was not tried:
    the attempt is not counted, and the server is probed again in `outbox_probe_s` (not after
    the message's backoff), so mail goes out within seconds of the server's return."""
    give_up = not unreached and (permanent or row.attempts >= settings.outbox_max_attempts)
    values: dict[str, Any] = {"last_error": error[:2000], "lease_until": None}
    if give_up:
        values["status"] = S.failed
    elif unreached:
        values.update(status=S.pending, attempts=OutboxMessage.attempts - 1,
                      next_attempt_at=utcnow() + timedelta(seconds=settings.outbox_probe_s))
    else:
        values.update(status=S.pending, next_attempt_at=utcnow() + backoff(row.attempts, settings))
    await set_where(engine, row.id or 0, _still_ours(row), **values)
    log.warning("outbox message %s %s: %s", row.id, "failed" if give_up else "deferred", error)


def _still_ours(row: OutboxMessage) -> Any:
    """This sender's claim on the row, and no later one (each claim counts an attempt)."""
    return and_(col(OutboxMessage.status) == S.claimed,
                col(OutboxMessage.claimed_by) == row.claimed_by,
                col(OutboxMessage.attempts) == row.attempts)


async def mark_sending(engine: Any, row: OutboxMessage) -> bool:
    """Only while our claim holds: once it lapsed and another sender claimed the row, the
    other sender sends it, never both."""
    return await set_where(engine, row.id or 0, _still_ours(row), status=S.sending)


async def backlog(session: Any) -> dict[str, Any]:
    """What the outbox still owes: messages not yet sent (pending or being sent), the oldest
    one's age, and the last error seen on them — for /health."""
    owed = col(OutboxMessage.status).in_([S.pending, S.claimed, S.sending])
    count, oldest = (await session.exec(
        select(func.count(), func.min(OutboxMessage.created_at)).where(owed))).one()
    last = (await session.exec(
        select(OutboxMessage.last_error).where(owed, col(OutboxMessage.last_error).is_not(None))
        .order_by(col(OutboxMessage.updated_at).desc()).limit(1))).first()
    if oldest is not None and oldest.tzinfo is None:  # SQLite hands datetimes back naive
        oldest = oldest.replace(tzinfo=UTC)
    age = (utcnow() - oldest).total_seconds() if oldest is not None else None
    return {"owed": int(count or 0), "oldest_age_s": round(age, 1) if age is not None else None,
            "last_error": last}


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
