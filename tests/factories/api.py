"""API callers: users with keys, their auth headers, and the event types a task logged."""

from __future__ import annotations

from typing import Any


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def new_user_key(email: str, *, admin: bool = False) -> str:
    from app.auth.keys import create_user
    from app.core.db import session_scope

    async with session_scope() as session:
        _user, key = await create_user(session, email=email, is_admin=admin)
    return key


def event_types(events: list[dict[str, Any]]) -> list[str]:
    return [e["type"] for e in events]
