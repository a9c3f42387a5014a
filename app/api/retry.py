"""A request that hits a transient database or broker error is retried, not answered 500.

    GET, HEAD, OPTIONS, and a POST carrying an Idempotency-Key    replayed (body buffered) up
                                                                  to ATTEMPTS times, backing off
    anything else                                                 503 with Retry-After: the
                                                                  client decides (a plain POST
                                                                  may have committed before the
                                                                  error; repeating it here could
                                                                  create its effect twice)

Only before the response has started: a stream that breaks later just ends. What counts as
transient is app.core.transient's rule (a dropped connection, a terminated backend, a locked
SQLite file, the broker away).
"""

from __future__ import annotations

import asyncio
import json
import logging
from typing import Any

from app.core.transient import is_transient

log = logging.getLogger(__name__)
ATTEMPTS = 4
BASE_DELAY_S = 0.1
SAFE = {"GET", "HEAD", "OPTIONS"}
RETRY_AFTER_S = 1

Scope = dict[str, Any]
Message = dict[str, Any]


class RetryTransient:
    def __init__(self, app: Any) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        headers = dict(scope.get("headers") or [])
        replayable = scope["method"] in SAFE or (
            scope["method"] == "POST" and b"idempotency-key" in headers)
        body = await _read_body(receive) if replayable else None
        started = False

        async def tracking_send(message: Message) -> None:
            nonlocal started
            if message["type"] == "http.response.start":
                started = True
            await send(message)

        delay = BASE_DELAY_S
        for attempt in range(1, ATTEMPTS + 1):
            try:
                await self.app(scope, _replay(body, receive) if body is not None else receive,
                               tracking_send)
                return
            except Exception as exc:
                if started or not is_transient(exc):
                    raise
                last = attempt == ATTEMPTS or body is None
                log.warning("%s %s hit a transient error (%s: %s); %s", scope["method"],
                            scope.get("path"), type(exc).__name__, str(exc)[:200],
                            "answering 503" if last else f"retry {attempt} in {delay:.1f}s")
                if last:
                    await _unavailable(send)
                    return
            await asyncio.sleep(delay)
            delay *= 2


async def _read_body(receive: Any) -> bytes:
    chunks: list[bytes] = []
    while True:
        message = await receive()
        if message["type"] != "http.request":
            break
        chunks.append(message.get("body", b""))
        if not message.get("more_body"):
            break
    return b"".join(chunks)


def _replay(body: bytes, receive: Any) -> Any:
    sent = False

    async def replay() -> Message:
        nonlocal sent
        if not sent:
            sent = True
            return {"type": "http.request", "body": body, "more_body": False}
        return await receive()  # after the body: wait for the client to go away

    return replay


async def _unavailable(send: Any) -> None:
    payload = json.dumps({"detail": "the database or the broker is unavailable for a moment; "
                                    f"retry in {RETRY_AFTER_S} s"}).encode()
    await send({"type": "http.response.start", "status": 503, "headers": [
        (b"content-type", b"application/json"), (b"content-length", str(len(payload)).encode()),
        (b"retry-after", str(RETRY_AFTER_S).encode())]})
    await send({"type": "http.response.body", "body": payload})
