"""Test data and helpers shared by the suites (fixtures stay in conftest.py)."""

from tests.factories.api import auth, event_types, new_user_key
from tests.factories.environment import (
    PG_ADMIN_URL,
    REDIS_URL,
    base_env,
    create_pg_database,
    drop_pg_database,
)
from tests.factories.worker import Enqueued, run_enqueued

__all__ = ["PG_ADMIN_URL", "REDIS_URL", "Enqueued", "auth", "base_env", "create_pg_database",
           "drop_pg_database", "event_types", "new_user_key", "run_enqueued"]
