"""The Celery app, built from the same settings as the API.

acks_late + reject_on_worker_lost + prefetch 1: a message is acknowledged only after its task
ran, so a worker that dies hands it back. The broker is not the only safety net: a database lease
says who runs a task, and the sweep re-queues tasks whose lease expired.
"""

from __future__ import annotations

from typing import Any

from celery import Celery

from app.core.config import Settings, get_settings
from worker.embedded_broker import register

register()


def broker_options(settings: Settings) -> dict[str, Any]:
    url = settings.celery_broker_url
    if url.startswith(("redis://", "rediss://")):
        return {
            # A lost message is visible again after this; the lease stops double runs.
            "visibility_timeout": settings.visibility_timeout_s,
            "unacked_restore_interval": 2,
            "unacked_restore_throttle": 1,
        }
    # Passed to SQLAlchemy's create_engine by kombu: wait for SQLite's lock, don't fail.
    return {"connect_args": {"timeout": 30}}


def make_celery(settings: Settings | None = None) -> Celery:
    settings = settings or get_settings()
    if settings.is_embedded_broker:
        settings.var_dir.mkdir(parents=True, exist_ok=True)
    app = Celery("taskbench", broker=settings.celery_broker_url, include=["worker.tasks"])
    app.conf.update(
        task_acks_late=True,
        task_reject_on_worker_lost=True,
        worker_prefetch_multiplier=1,
        task_ignore_result=True,
        task_default_queue="taskbench",
        task_serializer="json",
        accept_content=["json"],
        broker_connection_retry_on_startup=True,
        broker_transport_options=broker_options(settings),
        worker_hijack_root_logger=False,
        worker_send_task_events=False,
        task_track_started=False,
        enable_utc=True,
    )
    return app


celery_app = make_celery()


_by_broker: dict[str, Celery] = {}


def current_celery() -> Celery:
    """The Celery app for the broker configured now (settings can change in tests and the CLI)."""
    url = get_settings().celery_broker_url
    if celery_app.conf.broker_url == url:
        return celery_app
    if url not in _by_broker:
        _by_broker[url] = make_celery()
    return _by_broker[url]
