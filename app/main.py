"""create_app(): the FastAPI application — routers, middleware, lifespan."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager

from fastapi import FastAPI, Request
from fastapi.middleware.cors import CORSMiddleware
from fastapi.responses import JSONResponse
from fastapi.staticfiles import StaticFiles
from starlette.types import ASGIApp, Message, Receive, Scope, Send

import app.integrations  # noqa: F401 - registers the task-end hook (the notification rows)
from app.api import (
    agent_protocol,
    agents,
    artifacts,
    auth,
    characters,
    health,
    inline_runs,
    living,
    metrics,
    observatory,
    openapi,
    participants,
    scenarios,
    stream,
    tasks,
    templates,
)
from app.api.ap_key_url import KeyInPath
from app.api.docs import add_docs
from app.api.live import close_hub
from app.api.retry import RetryTransient
from app.auth.keys import ensure_admin_key
from app.core import tracing
from app.core.config import TEMPLATES_DIR, get_settings
from app.core.db import dispose_engines, session_scope
from app.core.tracing_asgi import TraceRequests
from app.ops.seed import seed_agents
from app.ops.sweeper import sweep_once
from app.web import ecosystem_pages
from app.web import pages as dashboard

log = logging.getLogger(__name__)
API_PREFIX = "/api/v1"


class BodyLimit:
    """413 for bodies over the limit: JSON bodies 1 MiB, file uploads their own limit."""

    def __init__(self, app: ASGIApp) -> None:
        self.app = app

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        settings = get_settings()
        is_upload = scope["path"].endswith(("/files", "/artifacts"))
        limit = settings.max_upload_bytes * 20 if is_upload else settings.max_body_bytes
        headers = dict(scope.get("headers") or [])
        declared = headers.get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await _too_large(send, limit)
            return
        seen = 0

        async def limited() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise _TooLarge()
            return message

        try:
            await self.app(scope, limited, send)
        except _TooLarge:
            await _too_large(send, limit)


class _TooLarge(Exception):
    pass


async def _too_large(send: Send, limit: int) -> None:
    body = f'{{"detail":"request body larger than {limit} bytes"}}'.encode()
    await send({"type": "http.response.start", "status": 413,
                "headers": [(b"content-type", b"application/json"),
                            (b"content-length", str(len(body)).encode())]})
    await send({"type": "http.response.body", "body": body})


async def _sweep_forever(interval: float) -> None:
    while True:
        await sweep_once()
        await asyncio.sleep(interval)


async def startup() -> None:
    """Seed agents and bootstrap the admin key (the schema comes from Alembic, not here)."""
    settings = get_settings()
    async with session_scope() as session:
        await seed_agents(session)
        if settings.admin_api_key:
            await ensure_admin_key(session, settings.admin_api_key)


def create_app(*, sweeper: bool = True) -> FastAPI:
    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        tracing.setup("taskbench-api")
        await startup()
        # Everything loaded so far lives as long as the process: out of the collector's sight,
        # a full collection walks only what requests made (the pauses that showed as p99
        # spikes on the event-log pages)
        gc.collect()
        gc.freeze()
        task = asyncio.create_task(_sweep_forever(get_settings().sweep_interval_s)) if sweeper \
            else None
        try:
            yield
        finally:
            if task:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
            await close_hub()  # its read in flight ends before the connections close
            await dispose_engines()
            tracing.shutdown()

    app = FastAPI(
        title="Taskbench",
        version="0.1.0",
        description="Submit a task over REST; get back finished work, events, files and a report.",
        lifespan=lifespan,
        generate_unique_id_function=openapi.operation_id,
        docs_url=None,
        redoc_url=None,
    )
    add_docs(app)
    # Each router straight into the app, under the prefix: FastAPI builds a route where it is
    # declared and again for the app that includes it (on the first request); a router of
    # routers in between cost a third build of every route (~2 MB, tests/unit/test_route_builds)
    for module in (tasks, artifacts, agents, scenarios, inline_runs, participants, characters,
                   observatory, living, templates, auth, metrics):
        app.include_router(module.router, prefix=API_PREFIX, responses=openapi.ERRORS)
    app.include_router(health.router, prefix=API_PREFIX, responses=openapi.PUBLIC_ERRORS)
    app.include_router(health.router, include_in_schema=False)  # the same, for probes
    app.include_router(stream.ws_router)
    app.include_router(agent_protocol.router, responses=openapi.ERRORS)
    openapi.install(app)
    app.include_router(metrics.metrics_router)
    app.include_router(dashboard.router)
    app.include_router(ecosystem_pages.router)
    app.mount("/static", StaticFiles(directory=TEMPLATES_DIR / "web" / "static"), name="static")
    app.add_middleware(RetryTransient)  # innermost: sees the endpoint's own exceptions
    app.add_middleware(BodyLimit)
    origins = get_settings().cors_origins
    if origins:  # a front end on another origin; off by default
        app.add_middleware(
            CORSMiddleware, allow_origins=origins, allow_credentials=origins != ["*"],
            allow_methods=["GET", "POST", "PUT", "PATCH", "DELETE"],
            allow_headers=["Authorization", "Content-Type", "X-API-Key", "Idempotency-Key",
                           "Last-Event-ID"],
            expose_headers=["Retry-After", "Location"], max_age=600,
        )
    app.add_middleware(TraceRequests)  # a 413 is a traced request too
    app.add_middleware(KeyInPath)  # outermost: tracing and logs never see a key in a path

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> JSONResponse:
        log.exception("unhandled error on %s %s", request.method, request.url.path)
        return JSONResponse({"detail": "internal error; it has been logged"}, status_code=500)

    return app

