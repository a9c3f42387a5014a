"""/auth/token: trade an API key for a short-lived signed token (for ?token= on streams)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Depends, HTTPException, Request, status
from fastapi.security import HTTPAuthorizationCredentials
from pydantic import BaseModel
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from app.api.deps import SessionDep, bearer, key_user
from app.auth.keys import hash_key
from app.auth.tokens import API_AUDIENCE, looks_like_token, mint
from app.core.config import get_settings
from app.models import ApiKey

router = APIRouter(prefix="/auth", tags=["auth"])


class TokenPublic(BaseModel):
    access_token: str
    token_type: str = "bearer"
    expires_in: int


async def api_key_row(session: AsyncSession, key: str) -> ApiKey:
    """The live key row for `key` (authenticated and rate-limited as any REST call)."""
    await key_user(session, key)
    row = (await session.exec(select(ApiKey).where(ApiKey.key_hash == hash_key(key)))).first()
    assert row is not None and row.id is not None
    return row


def token_for(row: ApiKey, ttl_s: int | None = None) -> TokenPublic:
    ttl = ttl_s or get_settings().token_ttl_s
    assert row.id is not None
    token = mint(user_id=row.user_id, key_id=row.id, audience=API_AUDIENCE, ttl_s=ttl)
    return TokenPublic(access_token=token, expires_in=ttl)


@router.post("/token", response_model=TokenPublic)
async def create_token(
    request: Request,
    session: SessionDep,
    creds: Annotated[HTTPAuthorizationCredentials | None, Depends(bearer)],
) -> TokenPublic:
    """A token usable as Bearer and as `?token=` on SSE/WebSocket streams until it expires.

    Only an API key can mint one: a token cannot renew itself, so a leaked token dies on time.
    """
    key = creds.credentials if creds else request.headers.get("x-api-key", "")
    if not key or looks_like_token(key):
        raise HTTPException(status.HTTP_401_UNAUTHORIZED, "an API key is required",
                            headers={"WWW-Authenticate": "Bearer"})
    return token_for(await api_key_row(session, key))
