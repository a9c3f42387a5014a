"""Mail that waits (issue 17, #7): while the mail server is unreachable the owed messages are
probed every `outbox_probe_s` (default 2 s) without being charged an attempt, so they go out at
the first sweep after that once the server is back — not after a doubling backoff of up to
minutes; a killed sender's claim lapses after `outbox_lease_s` (default 8 s), and a lapsed claim
taken over by another sender is never sent by both. /health shows the backlog."""

# ruff: noqa: F811  (fixtures imported from the outbox tests are re-bound as arguments)
from __future__ import annotations

import asyncio
from datetime import timedelta

from sqlmodel import select

from app.core.db import session_scope
from app.integrations import outbox_state
from app.integrations.outbox import flush_pending
from app.integrations.outbox_send import send_rows
from app.models import OutboxMessage, utcnow
from tests.component.test_email_outbox import end_task, smtp  # noqa: F401
from tests.factories.deliver import create_task, engine, settings  # noqa: F401


async def _rows(engine) -> list[OutboxMessage]:
    async with session_scope(engine) as session:
        return list((await session.exec(select(OutboxMessage))).all())


def _aware(when):  # SQLite hands datetimes back naive (UTC)
    from datetime import UTC

    return when if when.tzinfo else when.replace(tzinfo=UTC)


async def test_mail_goes_out_at_the_first_sweep_after_the_server_returns(engine, settings,
                                                                        smtp) -> None:
    # given the product's defaults and a mail server that is down
    s = smtp.configure()
    assert (s.outbox_probe_s, s.outbox_lease_s) == (2.0, 8.0)
    await end_task(engine, s, ["a@example.com", "b@example.com"])
    # when a sweep tries to send, several times over
    for _ in range(3):
        assert await flush_pending(10, settings=s, engine=engine) == 0
        for row in await _rows(engine):
            row.next_attempt_at = utcnow()  # as if the probe interval had passed
            async with session_scope(engine) as session:
                session.add(row)
    # then nothing was charged to the messages, and the next try is one probe away
    before = utcnow()
    assert await flush_pending(10, settings=s, engine=engine) == 0
    rows = await _rows(engine)
    assert {r.attempts for r in rows} == {0} and {r.status for r in rows} == {"pending"}
    assert all(_aware(r.next_attempt_at) <= before + timedelta(seconds=2.5) for r in rows)

    # when the server is back and the probe time has come
    smtp.start()
    wait = max((_aware(r.next_attempt_at) - utcnow()).total_seconds() for r in rows)
    await asyncio.sleep(max(0.0, wait) + 0.05)
    # then the very next sweep delivers every message, once
    assert await flush_pending(10, settings=s, engine=engine) == 2
    assert await flush_pending(10, settings=s, engine=engine) == 0
    assert sorted(m[0][0] for m in smtp.inbox.messages) == ["a@example.com", "b@example.com"]


async def test_a_lapsed_claim_taken_over_is_sent_by_one_sender_only(engine, settings,
                                                                    smtp) -> None:
    # given a sender that claimed a message and then stalled past its (short) lease
    s = smtp.configure(outbox_lease_s=0.1)
    smtp.start()
    await end_task(engine, s, ["a@example.com"])
    stalled = await outbox_state.claim(engine, 10, s, None)
    assert len(stalled) == 1
    await asyncio.sleep(0.2)
    # when another sender takes the message over and sends it
    assert await flush_pending(10, settings=s, engine=engine) == 1
    # and the stalled sender wakes up and goes on with its claim
    from app.integrations import email as mail

    sent_late = await send_rows(stalled, mail.smtp_target(s.smtp_url), s, engine)
    # then the message went out once
    assert sent_late == 0
    assert len(smtp.inbox.messages) == 1
    assert [r.status for r in await _rows(engine)] == ["sent"]


async def test_health_shows_what_the_outbox_owes(engine, settings, smtp) -> None:
    s = smtp.configure()
    await end_task(engine, s, ["a@example.com"])
    await flush_pending(10, settings=s, engine=engine)  # the server is down
    async with session_scope(engine) as session:
        owed = await outbox_state.backlog(session)
    assert owed["owed"] == 1 and owed["oldest_age_s"] is not None
    assert "SMTP connect" in owed["last_error"]
    smtp.start()
    for row in await _rows(engine):
        row.next_attempt_at = utcnow()
        async with session_scope(engine) as session:
            session.add(row)
    assert await flush_pending(10, settings=s, engine=engine) == 1
    async with session_scope(engine) as session:
        assert (await outbox_state.backlog(session))["owed"] == 0
