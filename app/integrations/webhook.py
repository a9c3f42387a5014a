"""Webhooks: a signed JSON POST when a task asks a question and when it ends, via the outbox.

A task names its URL in `notify.webhook`; the rows are written in the transaction that pauses
or ends the task (app/integrations/outbox.py, kind `webhook`) and sent from here, retried like
email.

    POST <notify.webhook>
    Content-Type: application/json
    Taskbench-Event: task.question | task.ended
    Taskbench-Delivery: <the row's Message-ID>     the same on every retry: receivers dedupe
    Taskbench-Signature: t=<unix seconds>,v1=<hex HMAC-SHA256(secret, "<t>." + raw body)>

A receiver recomputes the HMAC with TASKBENCH_WEBHOOK_SECRET over the timestamp, a dot and the
raw body, compares it in constant time (`verify`) and rejects old timestamps (replays).

Delivery is at-least-once: the row stays `claimed` (leased) during the POST, so a sender that
dies is replaced after the lease and the receiver may see the delivery twice. A 2xx marks it
sent; a network error, 408, 429 or 5xx retries with the outbox's backoff; any other answer, a
redirect or a refused URL fails it. Every attempt vets the URL with netguard (public addresses
only, unless its host is in `webhook_allow_hosts`) and connects to the vetted address.
"""

from __future__ import annotations

import hashlib
import hmac
import json
import logging
import time
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

from sqlmodel import col

from app.core.config import Settings, get_settings
from app.core.db import session_scope
from app.core.redact import redact
from app.integrations import outbox_state as state
from app.integrations.questions import question_context
from app.models import OutboxMessage, OutboxStatus, Task, utcnow
from app.sandbox.netguard import Target, UrlRefused, vet_url

if TYPE_CHECKING:
    import httpx

log = logging.getLogger(__name__)
SIGNATURE_HEADER = "Taskbench-Signature"
RETRY_STATUSES = {408, 429}
MAX_AGE_S = 300


def sign(secret: str, timestamp: int, body: bytes) -> str:
    """The signature header's value for `body` sent at `timestamp`."""
    mac = hmac.new(secret.encode(), f"{timestamp}.".encode() + body, hashlib.sha256)
    return f"t={timestamp},v1={mac.hexdigest()}"


def verify(secret: str, header: str, body: bytes, *, now: float | None = None) -> bool:
    """Whether `header` signs `body` with `secret` and is at most MAX_AGE_S old."""
    try:
        fields = dict(part.split("=", 1) for part in header.split(","))
        timestamp = int(fields["t"])
    except (ValueError, KeyError):
        return False
    expected = sign(secret, timestamp, body).split("v1=", 1)[1]
    fresh = abs((now or time.time()) - timestamp) <= MAX_AGE_S
    return fresh and hmac.compare_digest(expected, fields.get("v1", ""))


def body_for(row: OutboxMessage, task: Task, settings: Settings) -> bytes:
    """The JSON body: the event, the delivery id, the task as it is now (and the question)."""
    payload = row.payload or {}
    data = task.model_dump()
    body: dict[str, Any] = {
        "event": payload.get("event"), "delivery": row.message_id,
        "task": {"id": task.id, "title": task.title, "status": task.status,
                 "summary": task.summary, "error": task.error,
                 "url": f"{settings.base_url}/tasks/{task.id}",
                 "api_url": f"{settings.base_url}/api/v1/tasks/{task.id}"},
    }
    if payload.get("event") == "task.question":
        body.update(question_context(data, payload, settings))
    return redact(json.dumps(body, default=str, separators=(",", ":"))).encode()


def _pinned(target: Target) -> tuple[str, dict[str, str], dict[str, Any]]:
    parts = urlsplit(target.url)
    ip = f"[{target.ip}]" if ":" in target.ip else target.ip
    url = urlunsplit((target.scheme, f"{ip}:{target.port}", parts.path or "/", parts.query, ""))
    host = target.host if target.port in (80, 443) else f"{target.host}:{target.port}"
    return url, {"Host": host}, {"sni_hostname": target.host}


async def post(row: OutboxMessage, body: bytes, settings: Settings) -> httpx.Response:
    """One signed POST to the row's vetted URL (UrlRefused when it may not be reached)."""
    payload = row.payload or {}
    target = await vet_url(str(payload.get("url") or ""), settings.webhook_allow_hosts)
    url, headers, extensions = _pinned(target)
    headers.update({"Content-Type": "application/json", "User-Agent": "Taskbench-Webhook/1",
                    "Taskbench-Event": str(payload.get("event")),
                    "Taskbench-Delivery": row.message_id,
                    SIGNATURE_HEADER: sign(settings.webhook_secret, int(time.time()), body)})
    import httpx  # loaded by the first webhook, not by every idle process

    async with httpx.AsyncClient(timeout=settings.webhook_timeout_s, follow_redirects=False,
                                 trust_env=False) as client:
        request = client.build_request("POST", url, content=body, headers=headers,
                                       extensions=extensions)
        return await client.send(request)


async def _deliver(row: OutboxMessage, settings: Settings, engine: Any) -> bool:
    import httpx

    async with session_scope(engine) as session:
        task = await session.get(Task, row.task_id)
    try:
        if task is None or not settings.webhook_secret:
            raise UrlRefused("the task is gone" if task is None
                             else "TASKBENCH_WEBHOOK_SECRET is not set; webhooks are unsigned")
        resp = await post(row, body_for(row, task, settings), settings)
    except UrlRefused as exc:
        await state.retry_later(engine, row, f"webhook refused: {exc}", settings, permanent=True)
        return False
    except httpx.HTTPError as exc:
        await state.retry_later(engine, row, f"webhook: {type(exc).__name__}: {exc}", settings)
        return False
    if resp.is_success:
        return await state.set_where(engine, row.id or 0,
                                     col(OutboxMessage.status) == OutboxStatus.claimed,
                                     status=OutboxStatus.sent, sent_at=utcnow(),
                                     lease_until=None, last_error=None)
    permanent = resp.status_code < 500 and resp.status_code not in RETRY_STATUSES
    await state.retry_later(engine, row, f"webhook answered HTTP {resp.status_code}", settings,
                            permanent=permanent)
    return False


async def flush_webhooks(limit: int = 100, *, task_id: int | None = None,
                         settings: Settings | None = None, engine: Any = None) -> int:
    """Send up to `limit` due webhooks (optionally of one task); returns how many went out."""
    settings = settings or get_settings()
    sent = 0
    for claimed in await state.claim(engine, limit, settings, task_id, webhooks=True):
        row = await state.load_row(engine, claimed.id)
        if row is not None and state.is_ours(row, claimed):
            sent += await _deliver(row, settings, engine)
    return sent
