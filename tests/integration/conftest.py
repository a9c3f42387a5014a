"""Fixtures for tests with real worker processes: a Redis broker, the in-process API enqueuing
for real, and the environment workers are started with."""

from __future__ import annotations

import os
from collections.abc import AsyncIterator, Iterator

import httpx
import pytest
import redis

from app.core.config import reset_settings
from tests.conftest import REDIS_URL


@pytest.fixture
def redis_broker(env: dict[str, str], monkeypatch: pytest.MonkeyPatch) -> Iterator[str]:
    """Redis (its own database number, flushed) as the broker of the API and its workers."""
    url = REDIS_URL.rsplit("/", 1)[0] + "/" + os.environ.get("TASKBENCH_TEST_REDIS_DB", "7")
    client = redis.Redis.from_url(url)
    client.flushdb()
    monkeypatch.setenv("TASKBENCH_BROKER_URL", url)
    monkeypatch.setenv("TASKBENCH_VISIBILITY_TIMEOUT_S", "60")
    reset_settings()  # the Celery app follows the broker URL in the settings
    yield url
    client.flushdb()
    monkeypatch.delenv("TASKBENCH_BROKER_URL")
    reset_settings()


@pytest.fixture
def worker_env(env: dict[str, str]) -> dict[str, str]:
    """The environment worker processes start with (the broker the API uses included)."""
    return {**env, "TASKBENCH_BROKER_URL": os.environ.get("TASKBENCH_BROKER_URL", "")}


@pytest.fixture
async def api(db: None) -> AsyncIterator[httpx.AsyncClient]:
    """An admin client of the in-process API, enqueuing for real (no `enqueued` fixture)."""
    from app.main import create_app, startup

    app = create_app(sweeper=False)
    await startup()
    async with httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://test/api/v1",
        headers={"Authorization": f"Bearer {os.environ['TASKBENCH_ADMIN_API_KEY']}"},
    ) as client:
        yield client
