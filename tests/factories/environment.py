"""The test environment: settings every test process runs with, and throwaway databases."""

from __future__ import annotations

import asyncio
import os
import uuid
from pathlib import Path

PG_ADMIN_URL = os.environ.get("TASKBENCH_TEST_PG", "postgresql://postgres@127.0.0.1:5432/test")
REDIS_URL = os.environ.get("TASKBENCH_TEST_REDIS", "redis://127.0.0.1:6379/0")


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
        # the product's default set would be fetched from PyPI; tests never reach the internet
        # (tests/component/test_venv_packages.py fills the wheel cache with wheels it builds)
        "TASKBENCH_VENV_DEFAULT_PACKAGES": "[]",
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
