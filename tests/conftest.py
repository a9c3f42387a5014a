"""Shared fixtures: a migrated database per test, the scripted LLM, API clients with keys.

Plain helpers (users and keys, the in-process worker, databases) are in tests/factories."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import httpx
import pytest

from app.core.config import reset_settings

# re-exported for tests that still import them from here; new tests use tests.factories
from tests.factories import (  # noqa: F401
    PG_ADMIN_URL,
    REDIS_URL,
    Enqueued,
    auth,
    base_env,
    create_pg_database,
    drop_pg_database,
    event_types,
    new_user_key,
    run_enqueued,
)
from tests.fakes.llm_server import ScriptedLLM


@pytest.fixture(scope="session")
def llm_server() -> Iterator[ScriptedLLM]:
    server = ScriptedLLM().start()
    yield server
    server.stop()


@pytest.fixture
def llm(llm_server: ScriptedLLM) -> ScriptedLLM:
    llm_server.reset()
    return llm_server


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
    """The configured engine, disposed after the test (and the model's HTTP sessions closed)."""
    from app.core.db import dispose_engines
    from app.run.llm import close_clients

    yield None
    await close_clients()
    await dispose_engines()


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


