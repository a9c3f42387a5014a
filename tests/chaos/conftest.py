"""Fixtures of the fault-injection tests: real workers (tests/integration's), on Redis or the
embedded broker, against SQLite or PostgreSQL."""

from __future__ import annotations

from tests.integration.conftest import api, redis_broker, worker_env

__all__ = ["api", "redis_broker", "worker_env"]
