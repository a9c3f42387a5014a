"""Short-lived signed tokens (HS256 JWTs through PyJWT) for streams, Bearer use and sessions.

A token names a user (`sub`) and the API key it was minted from (`kid`), so revoking that key
revokes its tokens too. `aud` keeps a dashboard session cookie from being replayed as an API
token and the other way round. Only HS256 is accepted (no `none`, no other algorithm), and the
key is the server's secret (app.core.config: set, or generated and kept under the var dir).
"""

from __future__ import annotations

import time
from typing import Any

from sqlmodel.ext.asyncio.session import AsyncSession

from app.core.config import get_settings
from app.models import ApiKey, User

API_AUDIENCE = "api"
SESSION_AUDIENCE = "dashboard"
ALGORITHM = "HS256"


class TokenError(Exception):
    """The token is malformed, forged, expired or for another audience."""


def looks_like_token(value: str) -> bool:
    return value.count(".") == 2 and value.startswith("eyJ")


def mint(*, user_id: int, key_id: int, audience: str, ttl_s: int) -> str:
    """A signed token for `user_id` that expires in `ttl_s` seconds."""
    import jwt  # PyJWT loads `cryptography` (~12 MB) for algorithms we never use: on first use

    now = int(time.time())
    claims = {"sub": str(user_id), "kid": key_id, "aud": audience, "iat": now,
              "exp": now + ttl_s}
    return jwt.encode(claims, get_settings().signing_key(), algorithm=ALGORITHM)


def verify(token: str, *, audience: str) -> dict[str, Any]:
    """The claims of a valid token; raises TokenError otherwise."""
    if len(token) > 2000 or not looks_like_token(token):
        raise TokenError("not a token")
    import jwt

    try:
        claims: dict[str, Any] = jwt.decode(
            token, get_settings().signing_key(), algorithms=[ALGORITHM], audience=audience,
            options={"require": ["exp", "aud", "sub"]})
    except jwt.PyJWTError as exc:
        raise TokenError(str(exc)) from exc
    return claims


async def token_user(session: AsyncSession, token: str, *, audience: str) -> User | None:
    """The user a valid token names, if the key it came from is still live."""
    try:
        claims = verify(token, audience=audience)
        user_id, key_id = int(claims["sub"]), int(claims["kid"])
    except (TokenError, KeyError, ValueError):
        return None
    key = await session.get(ApiKey, key_id)
    if key is None or key.revoked or key.user_id != user_id:
        return None
    return await session.get(User, user_id)
