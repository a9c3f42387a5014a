"""The worker's presence in the database: register, heartbeat, sweep, unregister."""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import socket
import threading

from sqlalchemy import delete
from sqlmodel import col

from app.core.config import get_settings
from app.core.db import dispose_engines, session_scope
from app.core.transient import is_transient, retrying
from app.models import WorkerNode, utcnow
from app.ops.sweeper import sweep_once
from app.sandbox.selftest import run_selftest

log = logging.getLogger(__name__)


async def register(node_id: str, agents: list[str], sandbox: str) -> None:
    async with session_scope() as session:
        row = await session.get(WorkerNode, node_id) or WorkerNode(
            id=node_id, hostname=socket.gethostname(), pid=os.getpid()
        )
        row.agents = agents
        row.sandbox = sandbox
        row.heartbeat_at = utcnow()
        session.add(row)


def tasks_in_flight() -> int:
    """run_task requests this worker is executing now, from Celery's own bookkeeping in the
    main process (the pool children report each accepted and finished request to it)."""
    from celery.worker import state

    return sum(1 for request in list(state.active_requests) if request.name == "run_task")


async def beat(node_id: str) -> None:
    async with session_scope() as session:
        row = await session.get(WorkerNode, node_id)
        if row is not None:
            row.heartbeat_at = utcnow()
            row.tasks_in_flight = tasks_in_flight()
            session.add(row)


async def unregister(node_id: str) -> None:
    async with session_scope() as session:
        await session.execute(delete(WorkerNode).where(col(WorkerNode.id) == node_id))


def sandbox_summary() -> str:
    status = run_selftest(get_settings())
    return f"{status.get('mode')}:{'ok' if status.get('ok') else 'FAILED'}"


async def heartbeat_loop(node_id: str, agents: list[str], stop: threading.Event) -> None:
    """Register, then heartbeat and sweep until `stop` is set; unregister on the way out."""
    settings = get_settings()
    summary = await asyncio.to_thread(sandbox_summary)
    await retrying(lambda: register(node_id, agents, summary), "register the worker")
    next_beat = 0.0
    loop = asyncio.get_running_loop()
    try:
        while not stop.is_set():
            if loop.time() >= next_beat:
                try:
                    await beat(node_id)
                    next_beat = loop.time() + settings.worker_heartbeat_s
                except Exception as exc:  # a dropped connection must not stop the sweeps
                    if not is_transient(exc):
                        raise
                    log.warning("heartbeat failed (%s); retrying", type(exc).__name__)
            await sweep_once()
            await asyncio.sleep(settings.sweep_interval_s)
    finally:
        with contextlib.suppress(Exception):  # the row expires by itself when this fails
            await unregister(node_id)
        await dispose_engines()
