"""Celery tasks: thin, named <verb>_<noun>, taking ids and calling into app.agent."""

from __future__ import annotations

# Imported here, in the parent, so pool children fork with everything loaded.
from app.agent.runner import deliver_task as deliver
from app.agent.runner import run_task as run
from worker.celery_app import celery_app
from worker.process import run_coroutine


@celery_app.task(name="run_task", acks_late=True, reject_on_worker_lost=True)
def run_task(task_id: int) -> str:
    """Run (or resume) one task; safe to deliver twice thanks to the database lease."""
    return run_coroutine(run(int(task_id)))


@celery_app.task(name="deliver_task", acks_late=True, reject_on_worker_lost=True)
def deliver_task(task_id: int) -> None:
    """Render the report, update the PR, send the emails of an ended task (each idempotent)."""
    run_coroutine(deliver(int(task_id)))


@celery_app.task(name="noop", acks_late=True)
def noop(counter_key: str = "") -> str:
    """A task that does nothing but count itself: the benchmarks' Celery round-trip floor."""
    if counter_key:
        from worker.process import bump_counter

        bump_counter(counter_key)
    return "ok"
