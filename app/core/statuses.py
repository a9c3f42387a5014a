"""A task's statuses and the sets of them the service acts on, as plain values: no ORM, so the
remote command line (which follows a task until it ends) names them without loading the
database layer. app.models re-exports them with the Task table."""

from __future__ import annotations

from enum import StrEnum


class TaskStatus(StrEnum):
    pending = "pending"
    assigned = "assigned"
    design = "design"
    build = "build"
    test = "test"
    review = "review"
    waiting_input = "waiting_input"
    waiting_children = "waiting_children"
    paused = "paused"
    completed = "completed"
    failed = "failed"
    cancelled = "cancelled"


TERMINAL = frozenset({TaskStatus.completed, TaskStatus.failed, TaskStatus.cancelled})
RUNNING = frozenset(
    {
        TaskStatus.assigned,
        TaskStatus.design,
        TaskStatus.build,
        TaskStatus.test,
        TaskStatus.review,
        TaskStatus.waiting_input,
        TaskStatus.waiting_children,
    }
)
# A worker holds (or may take) the task's lease: the statuses run_task leases and the sweep requeues
WORKING = frozenset(
    {TaskStatus.assigned, TaskStatus.design, TaskStatus.build, TaskStatus.test, TaskStatus.review}
)
# The same sets as plain strings, sorted: for SQL IN lists and comparisons with Task.status
TERMINAL_VALUES: tuple[str, ...] = tuple(sorted(s.value for s in TERMINAL))
RUNNING_VALUES: tuple[str, ...] = tuple(sorted(s.value for s in RUNNING))
WORKING_VALUES: tuple[str, ...] = tuple(sorted(s.value for s in WORKING))
