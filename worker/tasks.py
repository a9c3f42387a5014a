"""Celery tasks: thin, named <verb>_<noun>, taking ids and calling into app.run."""

from __future__ import annotations

from typing import Any

# The model calls' HTTP client, which app.run.llm_http imports at the first call: imported here
# in the parent, with everything below, so pool children fork with it loaded (else each pool
# process imports it at its first task, ~0.3 s of CPU; here once, its ~5 MB shared)
import aiohttp  # noqa: F401

import app.integrations  # noqa: F401 - registers the task-end hook (the notification rows)
from app.core import tracing

# Imported here, in the parent, so pool children fork with everything loaded.
from app.run.runner import deliver_task as deliver
from app.run.runner import run_task as run
from app.run.scenario.distributed import act_turn
from worker.celery_app import celery_app
from worker.process import run_coroutine


@celery_app.task(name="run_task", bind=True, acks_late=True, reject_on_worker_lost=True)
def run_task(self: Any, task_id: int) -> str:
    """Run (or resume) one task; safe to deliver twice thanks to the database lease."""
    with tracing.consumer_span("run_task", _headers(self.request), {"taskbench.task_id": task_id}):
        return run_coroutine(run(int(task_id)))


@celery_app.task(name="deliver_task", bind=True, acks_late=True, reject_on_worker_lost=True)
def deliver_task(self: Any, task_id: int) -> None:
    """Render the report, update the PR, send the emails of an ended task (each idempotent)."""
    with tracing.consumer_span("deliver_task", _headers(self.request),
                               {"taskbench.task_id": task_id}):
        run_coroutine(deliver(int(task_id)))


def _headers(request: Any) -> dict[str, Any]:
    # Celery (protocol 2) merges send_task(headers=…) into the message headers, which become
    # the request context: custom ones are both attributes and `request.headers`.
    headers = dict(getattr(request, "headers", None) or {})
    headers.setdefault(tracing.TRACEPARENT, getattr(request, tracing.TRACEPARENT, None))
    return headers


@celery_app.task(name="noop", acks_late=True)
def noop(counter_key: str = "") -> str:
    """A task that does nothing but count itself: the benchmarks' Celery round-trip floor."""
    if counter_key:
        from worker.process import bump_counter

        bump_counter(counter_key)
    return "ok"


@celery_app.task(name="act_scenario_turn", acks_late=True, reject_on_worker_lost=True)
def act_scenario_turn(task_id: int, turn: int, actor: str) -> str:
    """Compute one actor's move of a simultaneous scenario turn and store it as an event (the
    run's own worker reads it from the log; a repeated delivery finds it there and skips)."""
    return run_coroutine(act_turn(int(task_id), int(turn), str(actor)))
