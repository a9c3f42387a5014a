"""send_email: mail from the agent, only to the task's notify list or allow-listed domains,
rate limited per task, and delivered through the outbox (so exactly once, with retries)."""

from __future__ import annotations

import asyncio
import re
from datetime import timedelta

from sqlalchemy import func
from sqlmodel import select

from app.core.db import session_scope
from app.integrations.email import HeaderRefused, header_value
from app.integrations.outbox import enqueue_agent_mail, flush_pending
from app.models import OutboxMessage, utcnow
from app.sandbox import fs
from app.tools.errors import ToolError, ToolRefused
from app.tools.registry import ToolContext, ToolResult, tool

ADDRESS = re.compile(r"^[A-Za-z0-9._%+-]+@[A-Za-z0-9.-]+\.[A-Za-z]{2,}$")
MAX_ATTACHMENTS = 5


def allowed_recipient(ctx: ToolContext, to: str) -> bool:
    notify = {str(a).lower() for a in (ctx.task.get("notify") or {}).get("email", [])}
    domain = to.rsplit("@", 1)[-1].lower()
    return to.lower() in notify or domain in {d.lower() for d in ctx.settings.email_allow_domains}


async def _sent_last_hour(session: object, task_id: int) -> int:
    since = utcnow() - timedelta(hours=1)
    stmt = (
        select(func.count())
        .select_from(OutboxMessage)
        .where(
            OutboxMessage.task_id == task_id,
            OutboxMessage.kind == "agent",
            OutboxMessage.created_at >= since,
        )
    )
    return int((await session.exec(stmt)).one())  # type: ignore[attr-defined]


@tool(
    "send_email",
    "Send an email now (to the task's notify list or allowed domains only; rate limited). "
    'attach: workspace paths of files to attach, e.g. ["output/report.pdf"].',
    {
        "properties": {
            "to": {"type": "string", "description": "One recipient address"},
            "subject": {"type": "string"},
            "body": {"type": "string", "description": "Plain text"},
            "attach": {"type": "array", "items": {"type": "string"}},
        },
        "required": ["to", "subject", "body"],
    },
)
async def send_email(
    ctx: ToolContext, to: str, subject: str, body: str, attach: list[str] | None = None
) -> ToolResult:
    to = to.strip()
    if not ADDRESS.match(to):
        raise ToolError(f"not an email address: {to!r}")
    if not allowed_recipient(ctx, to):
        raise ToolRefused(f"{to} is not in this task's notify list or an allowed domain")
    try:
        header_value("Subject", subject[:200])
    except HeaderRefused as exc:
        raise ToolRefused(str(exc)) from exc
    attach = list(attach or [])
    if len(attach) > MAX_ATTACHMENTS:
        raise ToolError(f"at most {MAX_ATTACHMENTS} attachments")
    for rel in attach:  # a regular file now (re-read at send time); PathRefused is a refusal
        await asyncio.to_thread(fs.file_size, ctx.workspace.root, rel)
    engine = ctx.services.engine
    async with session_scope(engine) as session:
        if await _sent_last_hour(session, ctx.task_id) >= ctx.settings.email_agent_max_per_hour:
            raise ToolRefused("email rate limit reached for this task; try again later")
        msg_id, created = await enqueue_agent_mail(
            session,
            task_id=ctx.task_id,
            to=to,
            subject=subject[:200],
            body=body[:100_000],
            attach=attach,
            settings=ctx.settings,
        )
    if created:
        await flush_pending(10, task_id=ctx.task_id, settings=ctx.settings, engine=engine)
    await ctx.emit(
        "email", {"to": to, "subject": subject[:200], "message_id": msg_id, "queued": created}
    )
    note = "queued for delivery" if created else "already sent earlier (same message)"
    return ToolResult(f"Email to {to}: {note}.", {"message_id": msg_id})
