"""Short-lived signed tokens (HS256 JWT, stdlib only) for streams, Bearer use and sessions.

A token names a user (`sub`) and the API key it was minted from (`kid`), so revoking that key
revokes its tokens too. `aud` keeps a dashboard session cookie from being replayed as an API
token and the other way round.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from typing import Any

from sqlmodel.ext.asyncio.session import AsyncSession

from app.core.config import get_settings
from app.models import ApiKey, User

API_AUDIENCE = "api"
SESSION_AUDIENCE = "dashboard"


class TokenError(Exception):
    """The token is malformed, forged, expired or for another audience."""


def _b64(raw: bytes) -> str:
    return base64.urlsafe_b64encode(raw).rstrip(b"=").decode("ascii")


def _unb64(text: str) -> bytes:
    return base64.urlsafe_b64decode(text + "=" * (-len(text) % 4))


def _sign(signing_input: bytes) -> bytes:
    key = get_settings().secret_key.encode("utf-8")
    return hmac.new(key, signing_input, hashlib.sha256).digest()


def looks_like_token(value: str) -> bool:
    return value.count(".") == 2 and value.startswith("eyJ")


def mint(*, user_id: int, key_id: int, audience: str, ttl_s: int) -> str:
    """A signed token for `user_id` that expires in `ttl_s` seconds."""
    now = int(time.time())
    header = _b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    claims = {"sub": str(user_id), "kid": key_id, "aud": audience, "iat": now,
              "exp": now + ttl_s}
    payload = _b64(json.dumps(claims, separators=(",", ":")).encode())
    signing_input = f"{header}.{payload}".encode()
    return f"{header}.{payload}.{_b64(_sign(signing_input))}"


def verify(token: str, *, audience: str) -> dict[str, Any]:
    """The claims of a valid token; raises TokenError otherwise."""
    if len(token) > 2000 or not looks_like_token(token):
        raise TokenError("not a token")
    header, payload, signature = token.split(".")
    try:
        expected = _sign(f"{header}.{payload}".encode())
        if not hmac.compare_digest(expected, _unb64(signature)):
            raise TokenError("bad signature")
        if json.loads(_unb64(header)).get("alg") != "HS256":
            raise TokenError("unexpected algorithm")
        claims = json.loads(_unb64(payload))
    except (ValueError, TypeError) as exc:
        raise TokenError("malformed token") from exc
    if claims.get("aud") != audience:
        raise TokenError("token is for another audience")
    if not isinstance(claims.get("exp"), int) or claims["exp"] < time.time():
        raise TokenError("token expired")
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
