"""Per-process worker plumbing: one event loop per pool process, and the main process's
registration, heartbeat and sweep thread."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import socket
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

from celery.signals import (
    worker_init,
    worker_process_init,
    worker_process_shutdown,
    worker_ready,
    worker_shutdown,
)

from app.core import tracing
from app.core.config import get_settings
from app.core.db import forget_engines, load_driver
from app.core.heap import settle_heap
from app.core.watchdog import LoopWatchdog
from app.run import llm

log = logging.getLogger(__name__)
T = TypeVar("T")
_loop: asyncio.AbstractEventLoop | None = None
_stop = threading.Event()
SETTLE_S = 10.0


def worker_id() -> str:
    return f"{socket.gethostname()}:{os.getpid()}"


def run_coroutine(coro: Coroutine[Any, Any, T]) -> T:
    """Run `coro` on this process's own event loop (kept between tasks for pooled connections).

    Whatever it left running (a lease keeper told to stop, a run abandoned after its time ran
    out) is cancelled and awaited before this returns: the loop does not run between tasks, so a
    coroutine left suspended inside a transaction would keep SQLite's write lock (and its
    connection) until this process's next task, or, for a process that is exiting, forever."""
    global _loop
    if _loop is None or _loop.is_closed():
        _loop = asyncio.new_event_loop()
        asyncio.set_event_loop(_loop)
        stall_s = get_settings().loop_stall_s
        if stall_s > 0:
            LoopWatchdog(_loop, stall_s=stall_s).start()
    try:
        return _loop.run_until_complete(coro)
    finally:
        settle(_loop)
        settle_heap()  # after the first task only (app.core.heap)


def settle(loop: asyncio.AbstractEventLoop, timeout: float = SETTLE_S) -> None:
    """Cancel the tasks still pending on `loop` and let them unwind (their rollbacks run)."""
    pending = [t for t in asyncio.all_tasks(loop) if not t.done()]
    if not pending:
        return
    for leftover in pending:
        leftover.cancel()
    loop.run_until_complete(asyncio.wait(pending, timeout=timeout))
    stuck = [t for t in pending if not t.done()]
    if stuck:
        log.error("%d coroutine(s) did not unwind within %.0f s after their task: %s",
                  len(stuck), timeout, ", ".join(repr(t.get_coro()) for t in stuck)[:500])


@worker_init.connect
def _before_fork(**_: Any) -> None:
    # Loaded in the parent, before the pool forks, what each pool process loaded at its first
    # task: the database's dialect and driver, the models' mappers configured
    load_driver()
    # In the parent, before the pool forks: what every process inherits leaves the collector's
    # sight, so no full collection (the parent's or a child's, before the child's own freeze)
    # writes to its pages and copies them: each idle child kept 16 MB private, not 42 (PSS)
    gc.collect()
    gc.freeze()


@worker_process_init.connect
def _on_child_start(**_: Any) -> None:
    # Connections and loops inherited through fork belong to the parent.
    global _loop
    _loop = None
    forget_engines()
    llm.reset_clients()
    # Here, not in the parent: the span exporter's thread must be this child's own.
    tracing.setup("taskbench-worker")
    _sandbox_process_init()
    # what the child inherited lives as long as it does: out of the collector's sight, a full
    # collection walks only what tasks made (and leaves the shared pages unwritten)
    gc.freeze()


def _sandbox_process_init() -> None:
    """A pool child probes the jail itself (a parent's verdict, good or bad, is not its own)
    and adopts its commands' orphans so their zombies are reaped, never left to count."""
    from app.sandbox import probe, reaper

    probe.reset()
    if not reaper.become_subreaper():
        log.warning("could not become a child subreaper; orphaned sandbox zombies go to PID 1")


@worker_process_shutdown.connect
def _on_child_exit(**_: Any) -> None:
    tracing.shutdown()  # export the spans still batched before the child goes away
    if _loop is not None and not _loop.is_closed() and not _loop.is_running():
        # the model's HTTP sessions, closed on their own loop (not reported unclosed at exit)
        with contextlib.suppress(Exception):
            _loop.run_until_complete(llm.close_clients())


def _agents() -> list[str]:
    raw = os.environ.get("TASKBENCH_WORKER_AGENTS", "")
    return [a.strip() for a in raw.split(",") if a.strip()]


def _heartbeat_thread(node_id: str) -> None:
    from worker.lifecycle import heartbeat_loop

    try:
        asyncio.run(heartbeat_loop(node_id, _agents(), _stop))
    except Exception:  # noqa: BLE001 - log loudly; the worker keeps serving tasks
        log.exception("worker heartbeat thread died")


def _base_layer_thread() -> None:
    """Build the default packages' venv layer now, so the first task does not wait for it."""
    from app.sandbox.wheels import base_layer

    packages = get_settings().venv_default_packages
    try:
        base_layer(get_settings(), packages)
    except RuntimeError as exc:  # tasks say so in their venv_packages event
        log.warning("default packages %s are not available: %s", packages, str(exc)[:300])


@worker_ready.connect
def _on_ready(**_: Any) -> None:
    _stop.clear()
    _sandbox_process_init()  # the solo/threads pools run tasks in this very process
    node_id = worker_id()
    threading.Thread(target=_heartbeat_thread, args=(node_id,), name="taskbench-heartbeat",
                     daemon=True).start()
    threading.Thread(target=_base_layer_thread, name="taskbench-venv-base", daemon=True).start()
    log.info("taskbench worker %s ready (agents: %s)", node_id, ",".join(_agents()) or "all")


@worker_shutdown.connect
def _on_shutdown(**_: Any) -> None:
    _stop.set()


def bump_counter(key: str) -> None:
    """INCR a Redis key (benchmarks count finished no-op tasks this way)."""
    import redis

    url = get_settings().pubsub_redis_url
    if url:
        redis.Redis.from_url(url).incr(key)


__all__ = ["bump_counter", "get_settings", "run_coroutine", "worker_id"]
