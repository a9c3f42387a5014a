"""The email outbox: rows written with the status change, sent later, each exactly once.

    task_end_messages(id, attempts, notify)   rows for notify.email (+ notify.webhook), which
                                      the task's end writes in its own transaction
    enqueue_question(session, ...)    the same for a question the task asks (app.run.agent.waiting)
    enqueue_agent_mail(...)           a send_email row (async; the tool commits)
    flush_pending(limit)              send what is due; the worker and a periodic sweep call it
    notifications_for(session, id)    each message's state, for GET /tasks/{id}

The guarantee, step by step (each arrow is its own committed transaction):

1. claim: pending → claimed (attempts+1, lease). Dying here is harmless: nothing went out, the
   lease expires and another sender claims the row again.
2. SMTP connect, MAIL FROM, RCPT TO. Any failure (server down, 4xx) puts the row back to
   pending with exponential backoff; a 5xx refusal, or running out of attempts, marks it failed.
   Nothing has been delivered, so retrying can never duplicate.
3. claimed → sending is committed *before* DATA: this is the point of no return.
4. DATA, then sending → sent.

SMTP cannot be part of our transaction, so one window remains: between committing `sending`
(3) and committing `sent` (4). If the worker dies there, we cannot know whether the server
accepted the message. Such a row is never sent again: after its lease expires it becomes
`unconfirmed` (shown on the task). That window is at-most-once — one DATA exchange long —
and everywhere else delivery is exactly-once; the stable Message-ID additionally lets any
receiving system drop a duplicate. With no SMTP configured the sink is a file named by the
Message-ID, written atomically, so a stale `sending` row there is simply written again.
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from sqlmodel import col, select

from app.core.config import Settings, get_settings
from app.integrations import email as mail
from app.integrations import outbox_state as state
from app.integrations.outbox_send import send_rows
from app.models import OutboxMessage, OutboxStatus

S = OutboxStatus


def task_end_messages(task_id: int, attempts: int, notify: dict[str, Any] | None,
                      settings: Settings | None = None) -> list[OutboxMessage]:
    """The rows of a task's end: one per notify.email recipient, and the webhooks (no I/O: the
    caller writes them in the transaction that ends the task).

    The Message-ID is keyed on the task, its run and the recipient, so a second attempt to end
    the same run would collide on the unique key instead of mailing twice."""
    settings = settings or get_settings()
    recipients = {
        str(r).strip().lower(): str(r).strip()
        for r in (notify or {}).get("email", [])
        if str(r).strip()
    }
    rows = [OutboxMessage(task_id=task_id, kind="task_end", recipient=address,
                          message_id=mail.message_id(task_id, "end", f"{attempts}:{key}",
                                                     settings),
                          payload={})
            for key, address in sorted(recipients.items())]
    for url in webhook_urls(notify or {}, settings):
        rows.append(_webhook_message(task_id, url, "task.ended", f"{attempts}:{url}", {},
                                     settings))
    return rows


def enqueue_question(session: Any, *, task_id: int, notify: dict[str, Any], question: str,
                     asked_at: str, settings: Settings | None = None) -> list[str]:
    """Rows telling the task's owner about its question: one email per notify.email recipient
    and the webhook, keyed on the moment it was asked (so a replay adds nothing)."""
    settings = settings or get_settings()
    payload = {"question": question, "asked_at": asked_at, "timeout_s": settings.input_timeout_s}
    ids = []
    for address in sorted({str(r).strip() for r in notify.get("email", []) if str(r).strip()}):
        msg_id = mail.message_id(task_id, "question", f"{asked_at}:{address.lower()}", settings)
        session.add(OutboxMessage(task_id=task_id, kind="question", recipient=address,
                                  message_id=msg_id, payload=payload))
        ids.append(msg_id)
    for url in webhook_urls(notify, settings):
        ids.append(_add_webhook(session, task_id, url, "task.question", f"{asked_at}:{url}",
                                payload, settings))
    return ids


def webhook_urls(notify: dict[str, Any], settings: Settings) -> list[str]:
    """The task's own notify.webhook and the server-wide TASKBENCH_WEBHOOK_URL, once each."""
    urls = [str(notify.get("webhook") or ""), settings.webhook_url]
    return [u for i, u in enumerate(urls) if u and u not in urls[:i]]


def _add_webhook(session: Any, task_id: int, url: str, event: str, key: str,
                 payload: dict[str, Any], settings: Settings) -> str:
    message = _webhook_message(task_id, url, event, key, payload, settings)
    session.add(message)
    return message.message_id


def _webhook_message(task_id: int, url: str, event: str, key: str, payload: dict[str, Any],
                     settings: Settings) -> OutboxMessage:
    # shown as the recipient: the host only (a webhook's path or query often holds a token)
    parts = urlsplit(url)
    shown = f"{parts.scheme}://{parts.hostname or ''}{f':{parts.port}' if parts.port else ''}"
    return OutboxMessage(task_id=task_id, kind=state.WEBHOOK, recipient=shown[:320],
                         message_id=mail.message_id(task_id, event, key, settings),
                         payload={**payload, "url": url, "event": event})


async def enqueue_agent_mail(
    session: Any,
    *,
    task_id: int,
    to: str,
    subject: str,
    body: str,
    attach: list[str],
    settings: Settings,
) -> tuple[str, bool]:
    """Queue a send_email message; returns (message id, created). A replayed identical call
    (same task, recipient and content) finds the existing row instead of sending again."""
    key = "\x00".join([to.lower(), subject, body, *attach])
    msg_id = mail.message_id(task_id, "agent", key, settings)
    existing = await session.exec(select(OutboxMessage).where(OutboxMessage.message_id == msg_id))
    if existing.first() is not None:
        return msg_id, False
    session.add(
        OutboxMessage(
            task_id=task_id,
            kind="agent",
            recipient=to,
            message_id=msg_id,
            payload={"subject": subject, "body": body, "attach": attach},
        )
    )
    return msg_id, True


async def notifications_for(session: Any, task_id: int) -> list[dict[str, Any]]:
    """Each message of the task with its delivery state (what GET /tasks/{id} shows)."""
    result = await session.exec(
        select(OutboxMessage)
        .where(OutboxMessage.task_id == task_id)
        .order_by(col(OutboxMessage.id))
    )
    return [
        {
            "kind": r.kind,
            "recipient": r.recipient,
            "status": r.status,
            "attempts": r.attempts,
            "message_id": r.message_id,
            "last_error": r.last_error,
            "next_attempt_at": r.next_attempt_at if r.status == S.pending else None,
            "sent_at": r.sent_at,
        }
        for r in result.all()
    ]


async def flush_pending(
    limit: int = 100,
    *,
    task_id: int | None = None,
    settings: Settings | None = None,
    engine: Any = None,
) -> int:
    """Send up to `limit` due messages (optionally of one task); returns how many went out."""
    settings = settings or get_settings()
    target = mail.smtp_target(settings.smtp_url)
    await state.expire_stale_sending(engine, file_sink=target is None)
    ids = await state.claim(engine, limit, settings, task_id)
    if not ids:
        return 0
    return await send_rows(ids, target, settings, engine)
