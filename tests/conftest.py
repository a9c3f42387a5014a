"""Shared fixtures: a migrated database per test, the scripted LLM, API clients with keys."""

from __future__ import annotations

import asyncio
import os
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from app.core.config import reset_settings
from tests.fakes.llm_server import ScriptedLLM

PG_ADMIN_URL = os.environ.get("TASKBENCH_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("TASKBENCH_TEST_REDIS", "redis://127.0.0.1:6379/0")


@pytest.fixture(scope="session")
def llm_server() -> Iterator[ScriptedLLM]:
    server = ScriptedLLM().start()
    yield server
    server.stop()


@pytest.fixture
def llm(llm_server: ScriptedLLM) -> ScriptedLLM:
    llm_server.reset()
    return llm_server


def base_env(tmp_path: Path, db_url: str, llm_url: str) -> dict[str, str]:
    """The environment every test (and every worker process it starts) runs with."""
    return {
        "TASKBENCH_ENVIRONMENT": "test",
        "TASKBENCH_VAR_DIR": str(tmp_path / "var"),
        "TASKBENCH_WORKSPACES_DIR": str(tmp_path / "workspaces"),
        "TASKBENCH_DATABASE_URL": db_url,
        "TASKBENCH_BROKER_URL": "",
        "TASKBENCH_LLM_BASE_URL": llm_url,
        "TASKBENCH_LLM_API_KEY": "sk-test-" + "c" * 24,
        "TASKBENCH_LLM_RETRY_BASE_S": "0.01",
        "TASKBENCH_ADMIN_API_KEY": "tb_admin_" + "a" * 32,
        "TASKBENCH_SANDBOX": os.environ.get("TASKBENCH_SANDBOX", ""),
        "TASKBENCH_LEASE_SECONDS": "3",
        "TASKBENCH_SWEEP_INTERVAL_S": "0.5",
        "TASKBENCH_WORKER_HEARTBEAT_S": "1",
    }


def create_pg_database() -> str:
    """A fresh PostgreSQL database for one test; returns its asyncpg URL."""
    import asyncpg

    name = f"tb_{uuid.uuid4().hex[:12]}"

    async def make() -> None:
        conn = await asyncpg.connect(PG_ADMIN_URL)
        await conn.execute(f'CREATE DATABASE "{name}"')
        await conn.close()

    asyncio.run(make())
    host = PG_ADMIN_URL.split("://", 1)[1].rsplit("/", 1)[0]
    return f"postgresql+asyncpg://{host}/{name}"


def drop_pg_database(url: str) -> None:
    import asyncpg

    name = url.rsplit("/", 1)[1]

    async def drop() -> None:
        conn = await asyncpg.connect(PG_ADMIN_URL)
        await conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
        await conn.close()

    asyncio.run(drop())


@pytest.fixture(params=["sqlite"])
def db_url(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[str]:
    """The database under test: SQLite by default; tests parametrize with "postgres"."""
    if request.param == "postgres":
        url = create_pg_database()
        yield url
        drop_pg_database(url)
    else:
        yield f"sqlite+aiosqlite:///{tmp_path / 'taskbench.db'}"


@pytest.fixture
def env(
    tmp_path: Path, db_url: str, llm: ScriptedLLM, monkeypatch: pytest.MonkeyPatch
) -> Iterator[dict[str, str]]:
    """Configure the process for one test and migrate its database."""
    values = base_env(tmp_path, db_url, llm.url)
    for key, value in values.items():
        monkeypatch.setenv(key, value)
    reset_settings()
    from app.ops.migrate import upgrade
    from app.run import llm as llm_module

    llm_module.reset_clients()
    upgrade(db_url)
    yield values
    reset_settings()


@pytest.fixture
async def db(env: dict[str, str]) -> AsyncIterator[None]:
    """The configured engine, disposed after the test."""
    from app.core.db import dispose_engines

    yield None
    await dispose_engines()


class Enqueued(list):  # type: ignore[type-arg]
    """(task id, queue) of runs the API enqueued; `deliveries` the deliver_task messages;
    `headers` the message headers (trace context) by task id (the broker is bypassed in
    in-process tests)."""

    def __init__(self) -> None:
        super().__init__()
        self.deliveries: list[int] = []
        self.headers: dict[int, dict[str, str]] = {}

    def send(self, task_id: int, queue: str, name: str = "run_task",
             headers: dict[str, str] | None = None) -> None:
        if headers:
            self.headers[task_id] = headers
        if name == "deliver_task":
            self.deliveries.append(task_id)
        else:
            self.append((task_id, queue))


@pytest.fixture
def enqueued(monkeypatch: pytest.MonkeyPatch) -> Enqueued:
    sent = Enqueued()
    monkeypatch.setattr("app.tasks.enqueue._send", sent.send)
    return sent


@pytest.fixture
async def app_client(db: None, enqueued: Enqueued) -> AsyncIterator[httpx.AsyncClient]:
    """An admin client of the in-process API (no sweeper; the test drives the worker side)."""
    from app.main import create_app, startup

    app = create_app(sweeper=False)
    await startup()
    transport = httpx.ASGITransport(app=app)
    async with httpx.AsyncClient(transport=transport, base_url="http://test/api/v1",
                                 headers=auth(os.environ["TASKBENCH_ADMIN_API_KEY"])) as client:
        yield client


def auth(key: str) -> dict[str, str]:
    return {"Authorization": f"Bearer {key}"}


async def new_user_key(email: str, *, admin: bool = False) -> str:
    from app.auth.keys import create_user
    from app.core.db import session_scope

    async with session_scope() as session:
        _user, key = await create_user(session, email=email, is_admin=admin)
    return key


async def run_enqueued(enqueued: Enqueued) -> list[str]:
    """Run every enqueued task in this process, as a worker would, until none are left."""
    from app.core.tracing import consumer_span
    from app.run.runner import deliver_task, run_task

    results = []
    headers = getattr(enqueued, "headers", {})
    while enqueued or getattr(enqueued, "deliveries", None):
        while enqueued:
            task_id, _queue = enqueued.pop(0)
            # continued from the message's trace context, as worker/tasks.py does
            with consumer_span("run_task", headers.get(task_id), {"taskbench.task_id": task_id}):
                results.append(await run_task(task_id, owner=f"test-{uuid.uuid4().hex[:6]}"))
        while getattr(enqueued, "deliveries", None):
            task_id = enqueued.deliveries.pop(0)
            with consumer_span("deliver_task", headers.get(task_id),
                               {"taskbench.task_id": task_id}):
                await deliver_task(task_id)
    return results


def event_types(events: list[dict[str, Any]]) -> list[str]:
    return [e["type"] for e in events]
