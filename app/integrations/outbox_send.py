"""The transport half of the outbox: compose each claimed row and hand it to SMTP (one
connection per batch) or to the .eml file sink, moving it through the states that make the
guarantee in app/integrations/outbox.py hold."""

from __future__ import annotations

import asyncio
import contextlib
import email.policy
import logging
from email.message import EmailMessage
from email.utils import parseaddr
from pathlib import Path
from typing import TYPE_CHECKING, Any

from app.core.config import Settings
from app.core.db import session_scope
from app.integrations import email as mail
from app.integrations import outbox_state as state
from app.models import OutboxMessage, Task
from app.sandbox import fs

if TYPE_CHECKING:
    import aiosmtplib

log = logging.getLogger(__name__)
SMTP_TIMEOUT_S = 30.0


async def compose(row: OutboxMessage, settings: Settings, engine: Any) -> EmailMessage:
    """The message for `row`, built from the task as it is now (and its report)."""
    async with session_scope(engine) as session:
        task = await session.get(Task, row.task_id)
    if task is None:
        raise LookupError(f"task {row.task_id} is gone")
    if row.kind == "task_end":
        return await _compose_task_end(row, task, settings, engine)
    if row.kind == "question":
        from app.integrations.questions import question_context

        data = task.model_dump()
        context = {"task": data, **question_context(data, row.payload or {}, settings)}
        return mail.compose_question(settings, to=row.recipient, msg_id=row.message_id,
                                     context=context)
    payload = row.payload or {}
    root = Path(task.workspace) if task.workspace else None
    cap = settings.email_max_attachment_bytes
    files = [(Path(rel).name, await asyncio.to_thread(_read_attachment, root, rel, cap))
             for rel in payload.get("attach", [])]
    return mail.compose_agent_mail(
        settings,
        to=row.recipient,
        msg_id=row.message_id,
        subject=payload.get("subject", ""),
        body=payload.get("body", ""),
        attachments=files,
    )


def _read_attachment(root: Path | None, rel: str, cap: int) -> bytes | None:
    """An attachment read at send time through fs (a link, FIFO or hard link planted since
    send_email was called is left out, never followed); None when it cannot be attached."""
    try:
        return fs.read_bytes(root, rel, cap) if root else None
    except fs.PathRefused:
        return None


async def _compose_task_end(
    row: OutboxMessage, task: Task, settings: Settings, engine: Any
) -> EmailMessage:
    from app.integrations import links
    from app.integrations.report import ensure_report

    report: Path | None
    try:
        report = await ensure_report(task.id or 0, settings=settings, engine=engine)
    except Exception:  # noqa: BLE001 - a broken report must not stop the notification
        log.exception("report for task %s could not be rendered", task.id)
        report = None
    context = {"task": task.model_dump(), "task_url": links.task_page(settings, task.id or 0),
               "report_url": links.report_link(settings, task.id or 0)}
    return mail.compose_task_end(
        settings, to=row.recipient, msg_id=row.message_id, context=context, report=report
    )


async def _prepared(claims: list[state.Claimed], settings: Settings, engine: Any):
    """Yield (row, message) for each row still claimed by us; rows that cannot be composed are
    deferred. A claim that lapsed and was taken over is skipped: its new sender sends it."""
    for claimed in claims:
        row_id = claimed.id
        row = await state.load_row(engine, row_id)
        if row is None or not state.is_ours(row, claimed):
            continue
        try:
            msg = await compose(row, settings, engine)
        except mail.HeaderRefused as exc:  # the text itself is hostile: retrying cannot help
            log.warning("outbox message %s refused: %s", row_id, exc)
            await state.retry_later(engine, row, f"compose: {exc}", settings, permanent=True)
            continue
        except Exception as exc:  # noqa: BLE001 - one bad row must not block the others
            log.exception("outbox message %s could not be composed", row_id)
            await state.retry_later(engine, row, f"compose: {exc}", settings)
            continue
        yield row, msg


async def _to_files(ids: list[state.Claimed], settings: Settings, engine: Any) -> int:
    sent = 0
    async for row, msg in _prepared(ids, settings, engine):
        if await state.mark_sending(engine, row):
            mail.write_eml(settings, msg)
            await state.mark_sent(engine, row)
            sent += 1
    return sent


async def send_rows(
    ids: list[state.Claimed], target: mail.SmtpTarget | None, settings: Settings, engine: Any
) -> int:
    """Deliver the claimed rows `ids`; returns how many were delivered."""
    if target is None:
        return await _to_files(ids, settings, engine)
    import aiosmtplib  # loaded by the process that sends mail, not by every idle one

    smtp = aiosmtplib.SMTP(
        hostname=target.hostname,
        port=target.port,
        use_tls=target.use_tls,
        start_tls=target.start_tls,
        username=target.username,
        password=target.password,
        timeout=SMTP_TIMEOUT_S,
    )
    try:
        await smtp.connect()
    except (OSError, aiosmtplib.SMTPException) as exc:
        for claimed in ids:
            row = await state.load_row(engine, claimed.id)
            if row is not None and state.is_ours(row, claimed):
                await state.retry_later(engine, row, f"SMTP connect: {exc}", settings,
                                        unreached=True)
        return 0
    sent = 0
    try:
        async for row, msg in _prepared(ids, settings, engine):
            sent += await _send_one(smtp, row, msg, settings, engine)
    finally:
        try:
            await smtp.quit()
        except (OSError, aiosmtplib.SMTPException):
            smtp.close()
    return sent


async def _send_one(
    smtp: aiosmtplib.SMTP, row: OutboxMessage, msg: EmailMessage, settings: Settings, engine: Any
) -> int:
    """Envelope first (reversible), then commit `sending`, then DATA, then commit `sent`."""
    import aiosmtplib

    try:
        await smtp.mail(parseaddr(settings.email_from)[1] or settings.email_from)
        await smtp.rcpt(row.recipient)
    except aiosmtplib.SMTPResponseException as exc:
        await _reset(smtp)
        permanent = 500 <= exc.code < 600
        await state.retry_later(
            engine, row, f"SMTP {exc.code}: {exc.message}", settings, permanent=permanent
        )
        return 0
    except (OSError, aiosmtplib.SMTPException) as exc:
        await state.retry_later(engine, row, f"SMTP: {exc}", settings)
        return 0
    if not await state.mark_sending(engine, row):  # our claim expired and was taken over
        await _reset(smtp)
        return 0
    try:
        await smtp.data(msg.as_bytes(policy=email.policy.SMTP))
    except aiosmtplib.SMTPResponseException as exc:
        # The server answered DATA with an error: it did not take the message; try again later.
        await state.back_to_pending(engine, row, f"SMTP {exc.code}: {exc.message}", settings)
        return 0
    except (OSError, aiosmtplib.SMTPException) as exc:
        # The connection broke during DATA: delivery is unknown, so the row is not resent.
        await state.mark_unconfirmed(engine, row, f"connection lost during DATA: {exc}")
        return 0
    await state.mark_sent(engine, row)
    return 1


async def _reset(smtp: aiosmtplib.SMTP) -> None:
    import aiosmtplib

    with contextlib.suppress(OSError, aiosmtplib.SMTPException):
        await smtp.rset()
