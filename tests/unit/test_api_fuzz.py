"""schemathesis against /openapi.json: no request, however malformed, gets a 500."""

from __future__ import annotations

import asyncio
import os
from collections.abc import Iterator
from pathlib import Path

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis.checks import CHECKS

from app.core.config import reset_settings
from tests.conftest import base_env

ADMIN_KEY = "tb_admin_" + "a" * 32
NOT_A_SERVER_ERROR = CHECKS.get_by_names(["not_a_server_error"])


@pytest.fixture(scope="module")
def api_schema(tmp_path_factory: pytest.TempPathFactory) -> Iterator[object]:
    tmp: Path = tmp_path_factory.mktemp("fuzz")
    saved = dict(os.environ)
    os.environ.update(base_env(tmp, f"sqlite+aiosqlite:///{tmp / 'fuzz.db'}",
                               "http://127.0.0.1:9/v1"))
    os.environ["TASKBENCH_RATE_LIMIT_PER_MINUTE"] = "1000000"
    reset_settings()
    from app.core.db import dispose_engines
    from app.main import create_app, startup
    from app.ops.migrate import upgrade

    upgrade()

    async def prepare() -> None:
        await startup()
        await dispose_engines()

    asyncio.run(prepare())
    yield schemathesis.openapi.from_asgi("/openapi.json", create_app(sweeper=False))
    os.environ.clear()
    os.environ.update(saved)
    reset_settings()


schema = schemathesis.pytest.from_fixture("api_schema")


@schema.parametrize()
@settings(max_examples=15, deadline=None, suppress_health_check=list(HealthCheck))
def test_no_request_gets_a_server_error(case: schemathesis.Case) -> None:
    case.call_and_validate(headers={"Authorization": f"Bearer {ADMIN_KEY}"},
                           checks=NOT_A_SERVER_ERROR)
