"""TraceRequests: a server span per HTTP request (pure ASGI, so the span stays current in the
handler and everything it enqueues continues the same trace)."""

from __future__ import annotations

from typing import Any

from starlette.types import ASGIApp, Message, Receive, Scope, Send

from app.core import tracing


class TraceRequests:
    """`<METHOD> <route template>` spans with the HTTP semantic-convention attributes."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http" or not tracing.enabled():
            await self.app(scope, receive, send)
            return
        method = scope["method"]
        incoming = {k.decode("latin-1"): v.decode("latin-1")
                    for k, v in scope.get("headers") or [] if k == b"traceparent"}
        status = 0

        async def send_status(message: Message) -> None:
            nonlocal status
            if message["type"] == "http.response.start":
                status = message["status"]
            await send(message)

        with tracing.span(method, {"http.request.method": method, "url.path": scope["path"]},
                          kind="server", parent=incoming) as span:
            try:
                await self.app(scope, receive, send_status)
            finally:
                # The router has matched by now: name the span by the route template, not the
                # path, so that /tasks/1 and /tasks/2 are one operation.
                route = _route(scope)
                if route:
                    span.set_attribute("http.route", route)
                    span.update_name(f"{method} {route}")
                if status:
                    span.set_attribute("http.response.status_code", status)
                if status >= 500:
                    _mark_error(span, status)


def _route(scope: Scope) -> str | None:
    """The matched route's template with the prefixes of the routers it was included in."""
    route: Any = scope.get("route")
    template = getattr(route, "path_format", None)
    if not isinstance(template, str):
        return None
    # Included routers may keep their own paths (FastAPI ≥ 0.16x): the prefix is what precedes
    # the part of the path the route itself matched.
    path, regex = scope["path"], getattr(route, "path_regex", None)
    if regex is not None:
        for i, char in enumerate(path):
            if char == "/" and regex.match(path[i:]):
                return path[:i] + template
    return template


def _mark_error(span: Any, status: int) -> None:
    from opentelemetry.trace import Status, StatusCode

    span.set_status(Status(StatusCode.ERROR, f"HTTP {status}"))
