"""Forged tokens and session cookies: the signing key is never the public placeholder.

Each attack mints a token the way an attacker would (the README's old constant, `alg: none`,
another algorithm, a key of its own, an expired or re-aimed token) for the admin's real user and
key ids, and presents it as an API bearer token or as the dashboard's session cookie.
"""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import os
import stat
import time
import warnings

import httpx
import jwt
import pytest

from app.auth.tokens import API_AUDIENCE, SESSION_AUDIENCE, mint
from app.core import config
from app.core.config import PLACEHOLDER_SECRET, Settings, get_settings, kept_secret
from app.web.session import SESSION_COOKIE


def _claims(audience: str, *, ttl: int = 600) -> dict[str, object]:
    now = int(time.time())
    return {"sub": "1", "kid": 1, "aud": audience, "iat": now, "exp": now + ttl}


def _unsigned(claims: dict[str, object]) -> str:
    return jwt.encode(claims, key=None, algorithm="none")  # type: ignore[arg-type]


def _hand_signed(claims: dict[str, object], key: bytes) -> str:
    """HS256 by hand (PyJWT will not sign with an empty key; an attacker's script would)."""
    def b64(raw: bytes) -> str:
        return base64.urlsafe_b64encode(raw).rstrip(b"=").decode()

    head = b64(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    body = b64(json.dumps(claims).encode())
    sig = hmac.new(key, f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{b64(sig)}"


FORGERIES = {
    "placeholder_secret": lambda aud: jwt.encode(_claims(aud), PLACEHOLDER_SECRET,
                                                 algorithm="HS256"),
    "alg_none": lambda aud: _unsigned(_claims(aud)),
    "hs512_placeholder": lambda aud: jwt.encode(_claims(aud), PLACEHOLDER_SECRET * 8,
                                                algorithm="HS512"),
    "attackers_own_key": lambda aud: jwt.encode(_claims(aud), "k" * 48, algorithm="HS256"),
    "expired_real_key": lambda aud: jwt.encode(_claims(aud, ttl=-60),
                                               get_settings().signing_key(),
                                               algorithm="HS256"),
    "empty_key": lambda aud: _hand_signed(_claims(aud), b""),
}


def forge(forgery: str, audience: str) -> str:
    with warnings.catch_warnings():  # PyJWT warns about the short keys attackers use
        warnings.simplefilter("ignore")
        return FORGERIES[forgery](audience)


@pytest.mark.parametrize("forgery", sorted(FORGERIES))
async def test_forged_bearer_token_is_refused(app_client: httpx.AsyncClient, forgery) -> None:
    token = forge(forgery, API_AUDIENCE)
    # when the forged token is presented instead of the admin's key
    response = await app_client.get("/tasks", headers={"Authorization": f"Bearer {token}"})
    # then it is a 401, not the admin's task list
    assert response.status_code == 401


@pytest.mark.parametrize("forgery", sorted(FORGERIES))
async def test_forged_session_cookie_is_refused(app_client: httpx.AsyncClient, forgery) -> None:
    cookie = forge(forgery, SESSION_AUDIENCE)
    base = str(app_client.base_url).removesuffix("/api/v1")
    async with httpx.AsyncClient(transport=app_client._transport, base_url=base) as browser:
        browser.cookies.set(SESSION_COOKIE, cookie)
        response = await browser.get("/tasks", follow_redirects=False)
    # a forged session is treated as no session: sent to sign in, no task list
    assert response.status_code in (302, 303, 307, 401)


async def test_session_token_is_not_an_api_token(app_client: httpx.AsyncClient) -> None:
    token = mint(user_id=1, key_id=1, audience=SESSION_AUDIENCE, ttl_s=600)
    response = await app_client.get("/tasks", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 401


async def test_a_real_token_still_works(app_client: httpx.AsyncClient) -> None:
    # the control: a token minted by the server for the admin is accepted
    minted = await app_client.post("/auth/token")
    assert minted.status_code in (200, 201), minted.text
    token = minted.json()["access_token"]
    response = await app_client.get("/tasks", headers={"Authorization": f"Bearer {token}"})
    assert response.status_code == 200


def test_unset_secret_is_generated_once_and_kept_private(tmp_path) -> None:
    settings = Settings(var_dir=tmp_path, environment="development")
    assert settings.secret_key == PLACEHOLDER_SECRET
    key = settings.signing_key()
    path = tmp_path / "secret_key"
    assert key != PLACEHOLDER_SECRET and len(key) >= 32
    assert stat.S_IMODE(os.stat(path).st_mode) == 0o600
    # another process of the same installation reads the same key (not a new one)
    config._kept.clear()  # as a fresh process would
    assert kept_secret(path) == key == path.read_text().strip()
    assert key in settings.secrets()  # and it is redacted like every other secret


def test_production_refuses_the_placeholder(tmp_path) -> None:
    with pytest.raises(ValueError, match="TASKBENCH_SECRET_KEY"):
        Settings(var_dir=tmp_path, environment="production")
