"""The Agent Protocol for clients that cannot send an Authorization header (agbenchmark).

    /ap/k/{api_key}/v1/agent/tasks…   ≡   /ap/v1/agent/tasks… with `Authorization: Bearer {api_key}`

Off unless `TASKBENCH_AP_KEY_IN_URL=true`: a key in a URL ends up in browser histories, proxy and
access logs, so it is an opt-in for harnesses on a trusted network, never a default. Turned on,
the key still has to be a valid key: nothing is opened, the credential just travels in the path.
The path is rewritten in place before anything logs or traces it, so the key is not recorded.
"""

from __future__ import annotations

import re

from starlette.types import ASGIApp, Receive, Scope, Send

from app.core.config import get_settings

KEYED = re.compile(r"^/ap/k/(?P<key>[A-Za-z0-9_\-]{8,200})/v1(?P<rest>/.*)?$")


class KeyInPath:
    """Turn `/ap/k/{key}/v1/…` into `/ap/v1/…` with the key as a bearer token (when enabled)."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        path = scope.get("path", "") if scope["type"] in ("http", "websocket") else ""
        if path.startswith("/ap/k/") and get_settings().ap_key_in_url:
            found = KEYED.match(path)
            if found:
                rewrite(scope, found["key"], "/ap/v1" + (found["rest"] or ""))
        await self.app(scope, receive, send)


def rewrite(scope: Scope, key: str, path: str) -> None:
    """Point `scope` at `path` with `key` as its bearer token (in place: loggers see this)."""
    scope["path"] = path
    scope["raw_path"] = path.encode()
    headers = [(k, v) for k, v in scope.get("headers") or [] if k.lower() != b"authorization"]
    scope["headers"] = [*headers, (b"authorization", f"Bearer {key}".encode())]
