"""Posting a chat-completions body to an OpenAI-compatible endpoint over plain HTTP.

    post_chat(settings, data)   the reply's bytes; StatusError for an HTTP error status (the
                                provider's words, its headers for Retry-After), Unreachable when
                                no answer came (refused, reset, cut mid-body, timed out)
    client_for(settings)        this process's pooled client for the endpoint, key and timeout

The body goes out as the bytes the caller serialised once, with the key as a bearer token; no
SDK builds the request (that cost a third of a call's CPU) and the reply is read as plain JSON by
app.run.llm_reply. One client per (endpoint, key, timeout) keeps connections alive between calls;
`reset_clients()` drops them (a client belongs to the event loop that first used it).
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from app.core.config import Settings
from app.run.llm_reply import status_error

if TYPE_CHECKING:
    import httpx

_clients: dict[tuple[str, str, float], httpx.AsyncClient] = {}


class Unreachable(Exception):
    """The provider did not answer: the connection failed, broke, or the time ran out."""


def client_for(settings: Settings) -> httpx.AsyncClient:
    """One pooled client per (endpoint, key, timeout) in this process."""
    import httpx

    key = (settings.llm_base_url, settings.llm_api_key, settings.llm_timeout_s)
    if key not in _clients:
        _clients[key] = httpx.AsyncClient(
            base_url=settings.llm_base_url.rstrip("/") + "/",
            timeout=settings.llm_timeout_s,
            headers={"Authorization": f"Bearer {settings.llm_api_key or 'not-set'}",
                     "Content-Type": "application/json", "Accept": "application/json",
                     "User-Agent": "taskbench"},
        )
    return _clients[key]


def reset_clients() -> None:
    _clients.clear()


async def post_chat(settings: Settings, data: bytes) -> bytes:
    """POST `data` to the endpoint's chat/completions; the reply body of a 2xx."""
    import httpx

    try:
        response = await client_for(settings).post("chat/completions", content=data)
    except httpx.TimeoutException as exc:
        raise Unreachable(f"Connection error: no answer within {settings.llm_timeout_s:g} s "
                          f"({type(exc).__name__})") from exc
    except httpx.TransportError as exc:
        raise Unreachable(f"Connection error: {type(exc).__name__}: {exc}"[:500]) from exc
    if response.status_code >= 400:
        raise status_error(response.status_code, response.content, response.headers)
    return response.content
