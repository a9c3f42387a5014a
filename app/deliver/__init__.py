"""Deliverables: the PDF report, notification email (outbox) and GitHub pull requests.

The runner calls exactly these three hooks; each must be safe to call twice (a redelivered task
may run it again), and none may let a secret reach the workspace, an event or a log.

    prepare(task, workspace, settings, emit)   before the agent starts (e.g. clone github.repo)
    enqueue_notifications(session, task)       inside the transaction that ends the task
    after_end(task_id)                         after that commit: render report.pdf, flush outbox
"""

from __future__ import annotations

from typing import Any

from app.config import Settings
from app.sandbox.workspace import Workspace


async def prepare(task: Any, workspace: Workspace, settings: Settings, emit: Any) -> None:
    """Set the workspace up for the deliverables the task asked for (none yet)."""


def enqueue_notifications(session: Any, task: Any) -> None:
    """Add the task's notification rows to `session` (none yet)."""


async def after_end(task_id: int) -> None:
    """Produce what a finished task delivers (nothing yet)."""
