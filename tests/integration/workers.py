"""Starting and stopping real `taskbench worker` processes for integration tests."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

from sqlmodel import select

from app.core.db import session_factory
from app.models import Task, WorkerNode

ROOT = Path(__file__).resolve().parents[2]


class WorkerProcess:
    """A worker in its own session, so the whole process group can be signalled at once."""

    def __init__(self, env: dict[str, str], log_path: Path, agents: str = "",
                 concurrency: int = 1) -> None:
        args = [sys.executable, "-m", "app.ops.cli", "worker", "--concurrency", str(concurrency),
                "--loglevel", "INFO"]
        if agents:
            args += ["--agents", agents]
        self.log = open(log_path, "ab")  # noqa: SIM115 - closed in stop()
        self.proc = subprocess.Popen(args, cwd=ROOT, env={**os.environ, **env},
                                     stdout=self.log, stderr=subprocess.STDOUT,
                                     start_new_session=True)

    def kill(self) -> None:
        """SIGKILL the whole worker: main process and pool children, no clean-up."""
        with contextlib.suppress(ProcessLookupError):
            os.killpg(self.proc.pid, signal.SIGKILL)
        self.proc.wait(timeout=10)
        self.log.close()

    def stop(self) -> None:
        if self.proc.poll() is None:
            os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(timeout=15)
            except subprocess.TimeoutExpired:
                self.kill()
                return
        self.log.close()


async def wait_for(predicate, timeout: float = 60.0, interval: float = 0.2):  # type: ignore[no-untyped-def]
    """Poll an async predicate until it returns something truthy."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = await predicate()
        if value:
            return value
        await asyncio.sleep(interval)
    raise AssertionError(f"condition not met within {timeout}s")


async def workers_alive() -> int:
    async with session_factory()() as session:
        return len((await session.exec(select(WorkerNode))).all())


async def task_row(task_id: int) -> Task:
    async with session_factory()() as session:
        task = await session.get(Task, task_id)
        assert task is not None
        return task
