"""Dashboard sign-in: a signed HttpOnly session cookie, CSRF tokens, and the page renderer.

The cookie is a token for the `dashboard` audience, so it is never accepted by the REST API
(which therefore needs no CSRF defence); pages hand their scripts a short-lived API token.
"""

from __future__ import annotations

import hashlib
import hmac
import secrets
from typing import Any
from urllib.parse import urlencode

from fastapi import HTTPException, Request, status
from fastapi.responses import HTMLResponse
from sqlmodel.ext.asyncio.session import AsyncSession

from app.api.auth import token_for
from app.auth.tokens import SESSION_AUDIENCE, TokenError, verify
from app.core.config import TEMPLATES_DIR, get_settings
from app.core.jinja import environment
from app.models import ApiKey, User

SESSION_COOKIE = "tb_session"
LOGIN_CSRF_COOKIE = "tb_login_csrf"
CSP = ("default-src 'self'; img-src 'self' data:; style-src 'self'; script-src 'self'; "
       "connect-src 'self'; frame-ancestors 'none'; base-uri 'none'; form-action 'self'")


def csrf_for(session_value: str) -> str:
    """The CSRF token bound to one session (or login) cookie value."""
    key = get_settings().signing_key().encode()
    return hmac.new(key, b"csrf:" + session_value.encode(), hashlib.sha256).hexdigest()[:40]


def check_csrf(request: Request, cookie_name: str, given: str) -> None:
    value = request.cookies.get(cookie_name, "")
    if not value or not given or not hmac.compare_digest(csrf_for(value), given):
        raise HTTPException(status.HTTP_403_FORBIDDEN, "bad or missing CSRF token")


def new_login_nonce() -> str:
    return secrets.token_urlsafe(24)


def safe_next(value: str) -> str:
    """`value` if it is a path on this site to return to after sign-in, else "" (never another
    host: no scheme, no `//` or `/\\`, no control characters)."""
    if (not value.startswith("/") or value.startswith(("//", "/login"))
            or any(ord(c) < 32 or c == "\\" for c in value) or len(value) > 500):
        return ""
    return value


def _sign_in_first(request: Request) -> HTTPException:
    """A redirect to the sign-in page that comes back here (links in emails and PDFs land on
    the page they name; the strict session cookie is not sent on a cross-site click)."""
    here = request.url.path + (f"?{request.url.query}" if request.url.query else "")
    back = safe_next(here) if request.method == "GET" and here != "/tasks" else ""
    target = f"/login?{urlencode({'next': back})}" if back else "/login"
    return HTTPException(status.HTTP_303_SEE_OTHER, "sign in first", headers={"Location": target})


async def page_user(request: Request, session: AsyncSession) -> tuple[User, int]:
    """(user, key id) of the signed-in browser; otherwise a redirect to /login and back."""
    from app.auth.tokens import token_user

    raw = request.cookies.get(SESSION_COOKIE, "")
    user = await token_user(session, raw, audience=SESSION_AUDIENCE) if raw else None
    if user is None:
        raise _sign_in_first(request)
    try:
        key_id = int(verify(raw, audience=SESSION_AUDIENCE)["kid"])
    except (TokenError, KeyError, ValueError) as exc:
        raise _sign_in_first(request) from exc
    return user, key_id


async def page_token(session: AsyncSession, key_id: int) -> str:
    """A short-lived API token for the page's scripts (they call the REST API with it)."""
    row = await session.get(ApiKey, key_id)
    assert row is not None
    return token_for(row).access_token


def render(request: Request, name: str, context: dict[str, Any], code: int = 200) -> HTMLResponse:
    """A page with the session's CSRF token and strict security headers."""
    session_value = request.cookies.get(SESSION_COOKIE, "")
    page = environment(TEMPLATES_DIR / "web", autoescape=("html",)).get_template(name)
    html = page.render(csrf=csrf_for(session_value) if session_value else "", request=request,
                       **context)
    return HTMLResponse(html, status_code=code, headers={
        "Content-Security-Policy": CSP, "X-Frame-Options": "DENY",
        "Referrer-Policy": "same-origin", "X-Content-Type-Options": "nosniff",
        "Cache-Control": "no-store"})


def cookie_flags(request: Request) -> dict[str, Any]:
    return {"httponly": True, "samesite": "strict", "path": "/",
            "secure": request.url.scheme == "https"}
