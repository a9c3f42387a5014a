"""Is the Celery broker reachable? /health asks this every probe, without loading Celery.

    redis:// rediss://       a PING over a fresh connection (redis-py, which pub/sub uses too)
    tbsqla+sqlite:///<path>  the embedded broker's SQLite file opens and answers a query
    anything else (amqp://)  Celery's own connection check

Celery and kombu (with the MySQL dialect kombu's SQLAlchemy transport pulls in) are ~8 MB of an
API process that, idle, never sends a message: they load on the first enqueue instead.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from app.core.config import get_settings

TIMEOUT_S = 2.0
EMBEDDED_PREFIX = "tbsqla+sqlite:///"


def broker_status() -> tuple[bool, str]:
    """(reachable, "ok" or the error's type name); blocking, so async callers use a thread."""
    url = get_settings().celery_broker_url
    try:
        if url.startswith(("redis://", "rediss://")):
            _ping_redis(url)
        elif url.startswith(EMBEDDED_PREFIX) and url != EMBEDDED_PREFIX:
            _query_sqlite(url.removeprefix(EMBEDDED_PREFIX))
        else:
            _celery_check()
        return True, "ok"
    except Exception as exc:  # noqa: BLE001 - report any broker failure as unhealthy
        return False, type(exc).__name__


def _ping_redis(url: str) -> None:
    import redis

    client = redis.Redis.from_url(url, socket_timeout=TIMEOUT_S,
                                  socket_connect_timeout=TIMEOUT_S)
    try:
        client.ping()
    finally:
        client.close()


def _query_sqlite(path: str) -> None:
    # the folder and the file are made on first use, as the Celery app and kombu make them; an
    # unreadable or corrupt file fails here as it would fail kombu
    Path(path).parent.mkdir(parents=True, exist_ok=True)
    conn = sqlite3.connect(path, timeout=TIMEOUT_S)
    try:
        conn.execute("SELECT count(*) FROM sqlite_master").fetchone()
    finally:
        conn.close()


def _celery_check() -> None:
    from worker.celery_app import current_celery  # app/ reaches worker/ only lazily

    with current_celery().connection_for_write() as conn:
        conn.ensure_connection(max_retries=1, timeout=TIMEOUT_S)
