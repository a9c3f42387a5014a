"""Live task events: SSE on GET /api/v1/tasks/{id}/events, WebSockets /ws/tasks/{id}, /ws/events.

SSE: `Accept: text/event-stream`; each event is `id: <seq>`, `event: <type>`, `data: <json>`;
a reconnect with `Last-Event-ID` resumes after that seq. WebSocket frames are JSON objects
`{"type": "event"|"ping"|"overflow", ...}`; after `overflow`, reconnect with `?after=<seq>`.
Browsers cannot send headers on either, so both take `?token=` from POST /api/v1/auth/token.
"""

from __future__ import annotations

import asyncio
import json
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Request, WebSocket, WebSocketDisconnect
from fastapi.responses import JSONResponse, StreamingResponse
from fastapi.security import HTTPAuthorizationCredentials
from sqlmodel.ext.asyncio.session import AsyncSession

from app.api.deps import SessionDep, bearer, key_or_token_user, owned_task
from app.api.live import Item, follow, follow_batches, follow_status
from app.auth.tokens import looks_like_token
from app.core.db import session_factory
from app.models import User
from app.tasks.pubsub import encoded

ws_router = APIRouter(tags=["stream"])
IDLE_S = 15.0


async def stream_user(
    request: Request,
    session: SessionDep,
    creds: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> User:
    """The caller of a stream: Bearer/X-API-Key, or `?token=` (signed tokens only, never keys,
    which would otherwise end up in access logs)."""
    key = creds.credentials if creds else request.headers.get("x-api-key", "")
    return await _user_from(session, key, request.query_params.get("token", ""))


async def _user_from(session: AsyncSession, key: str, token: str) -> User:
    if not key and token:
        if not looks_like_token(token):
            raise HTTPException(401, "?token= takes a token from POST /api/v1/auth/token")
        key = token
    if not key:
        raise HTTPException(401, "missing API key or token", headers={"WWW-Authenticate": "Bearer"})
    return await key_or_token_user(session, key)


StreamUser = Annotated[User, Depends(stream_user)]


def wants_event_stream(request: Request) -> bool:
    return "text/event-stream" in request.headers.get("accept", "")


def _resume_point(request: Request, after: int) -> int:
    raw = request.headers.get("last-event-id", "").strip()
    return max(after, int(raw)) if raw.isdigit() and len(raw) < 19 else after


def _sse(item: Item) -> str:
    if item.kind == "ping":
        return ": ping\n\n"
    if item.kind == "overflow":
        return f"event: overflow\ndata: {json.dumps(item.data)}\n\n"
    event = item.data
    return f"id: {event['seq']}\nevent: {event['type']}\ndata: {encoded(event)}\n\n"


async def sse_response(
    request: Request, session: AsyncSession, task_id: int, user: User, after: int
) -> StreamingResponse:
    """The task's events as Server-Sent Events, from `after` (or Last-Event-ID) on."""
    await owned_task(session, task_id, user)
    start = _resume_point(request, after)
    # a stream may last hours: give the pooled connection back before it starts
    await session.close()

    async def lines() -> AsyncIterator[str]:
        yield "retry: 2000\n\n"
        async for batch in follow_batches(task_id, after=start, idle_s=IDLE_S):
            yield "".join(_sse(item) for item in batch)

    return StreamingResponse(lines(), media_type="text/event-stream",
                             headers={"Cache-Control": "no-cache", "X-Accel-Buffering": "no"})


async def _ws_user(websocket: WebSocket, task_id: int | None) -> User | None:
    """Authenticate (and, for a task, authorise) before accepting; deny with an HTTP status."""
    auth = websocket.headers.get("authorization", "")
    key = auth[7:].strip() if auth.lower().startswith("bearer ") else ""
    key = key or websocket.headers.get("x-api-key", "")
    try:
        async with session_factory()() as session:
            user = await _user_from(session, key, websocket.query_params.get("token", ""))
            if task_id is not None:
                await owned_task(session, task_id, user)
            elif not user.is_admin:
                raise HTTPException(403, "admin only")
    except HTTPException as exc:
        await _deny(websocket, exc.status_code, str(exc.detail))
        return None
    return user


async def _deny(websocket: WebSocket, status_code: int, detail: str) -> None:
    if "websocket.http.response" in websocket.scope.get("extensions", {}):
        await websocket.send_denial_response(JSONResponse({"detail": detail}, status_code))
    else:
        await websocket.close(code=4000 + status_code, reason=detail)


async def _pump(websocket: WebSocket, items: AsyncIterator[Item]) -> None:
    """Send `items` until they end or the client goes: its close is heard as it comes, not at
    the next send (a quiet feed, the global status one, sends only every IDLE_S: until then a
    closed client kept its handler and its subscription, and held up the server's shutdown)."""
    await websocket.accept()
    sending = asyncio.ensure_future(_send_all(websocket, items))
    closed = asyncio.ensure_future(_until_closed(websocket))
    try:
        await asyncio.wait({sending, closed}, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for part in (sending, closed):
            part.cancel()
        await asyncio.gather(sending, closed, return_exceptions=True)
    error = None if sending.cancelled() else sending.exception()
    if error is not None:
        raise error


async def _until_closed(websocket: WebSocket) -> None:
    """Return when the client closes (what it sends meanwhile is not read by anyone)."""
    while (await websocket.receive())["type"] != "websocket.disconnect":
        pass


async def _send_all(websocket: WebSocket, items: AsyncIterator[Item]) -> None:
    try:
        async for item in items:
            if item.kind == "event":
                await websocket.send_text('{"type":"event","event":' + encoded(item.data) + "}")
            else:
                await websocket.send_json({"type": item.kind, **item.data})
            if item.kind == "overflow":
                await websocket.close(code=1013, reason="fell behind; reconnect with ?after=")
                return
    except WebSocketDisconnect:
        return


@ws_router.websocket("/ws/tasks/{task_id}")
async def ws_task(websocket: WebSocket, task_id: int, after: int = 0) -> None:
    """A task's events over a WebSocket, from `?after=` on."""
    if await _ws_user(websocket, task_id) is not None:
        await _pump(websocket, follow(task_id, after=max(after, 0), idle_s=IDLE_S))


@ws_router.websocket("/ws/events")
async def ws_events(websocket: WebSocket) -> None:
    """Every task's status changes, live (admins)."""
    if await _ws_user(websocket, None) is not None:
        await _pump(websocket, follow_status(idle_s=IDLE_S))
