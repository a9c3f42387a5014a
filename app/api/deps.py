"""Dependencies as Annotated aliases: SessionDep, CurrentUser, AdminUser."""

from __future__ import annotations

import math
from collections.abc import AsyncIterator
from typing import Annotated

from fastapi import Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials, HTTPBearer
from sqlmodel.ext.asyncio.session import AsyncSession

from app.auth.keys import RateLimiter, hash_key, user_for_key
from app.auth.tokens import API_AUDIENCE, looks_like_token, token_user
from app.core.config import get_settings
from app.core.db import session_factory
from app.models import Task, User

bearer = HTTPBearer(auto_error=False, description="Authorization: Bearer <api key>")
_limiters: dict[int, RateLimiter] = {}


async def get_session() -> AsyncIterator[AsyncSession]:
    async with session_factory()() as session:
        yield session


SessionDep = Annotated[AsyncSession, Depends(get_session)]


def _limiter() -> RateLimiter:
    per_minute = get_settings().rate_limit_per_minute
    if per_minute not in _limiters:
        _limiters[per_minute] = RateLimiter(per_minute)
    return _limiters[per_minute]


async def key_user(session: AsyncSession, key: str) -> User:
    user = await user_for_key(session, key)
    if user is None:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "invalid API key",
                            headers={"WWW-Authenticate": "Bearer"})
    wait = _limiter().hit(hash_key(key))
    if wait > 0:
        raise HTTPException(status.HTTP_429_TOO_MANY_REQUESTS, "rate limit exceeded",
                            headers={"Retry-After": str(max(1, math.ceil(wait)))})
    return user


async def current_user(
    request: Request,
    session: SessionDep,
    creds: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> User:
    key = creds.credentials if creds else request.headers.get("x-api-key", "")
    if not key:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "missing API key",
                            headers={"WWW-Authenticate": "Bearer"})
    return await key_or_token_user(session, key)


async def key_or_token_user(session: AsyncSession, key: str) -> User:
    """The user of an API key or of a signed token from POST /auth/token."""
    if not looks_like_token(key):
        return await key_user(session, key)
    user = await token_user(session, key, audience=API_AUDIENCE)
    if user is None:
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "invalid or expired token",
                            headers={"WWW-Authenticate": "Bearer"})
    wait = _limiter().hit(f"user:{user.id}")
    if wait > 0:
        raise HTTPException(status.HTTP_429_TOO_MANY_REQUESTS, "rate limit exceeded",
                            headers={"Retry-After": str(max(1, math.ceil(wait)))})
    return user


CurrentUser = Annotated[User, Depends(current_user)]


async def admin_user(user: CurrentUser) -> User:
    if not user.is_admin:
        raise HTTPException(status.HTTP_403_FORBIDDEN, "admin only")
    return user


AdminUser = Annotated[User, Depends(admin_user)]


async def owned_task(session: AsyncSession, task_id: int, user: User) -> Task:
    """The task if `user` may see it; another user's task is a 404, not a 403."""
    task = await session.get(Task, task_id) if 0 < task_id < 2**62 else None
    if task is None or (task.owner_id != user.id and not user.is_admin):
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"task {task_id} not found")
    return task
