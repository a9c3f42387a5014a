"""What a run is doing now, as the lease keeper records it with each renewal of the lease.

A worker that dies takes its run with it; the next delivery reads the dead run's last recorded
activity. Only a death inside a tool call (a command that fork-bombed, ate the memory, killed its
worker) is the task's own doing and counts toward `max_deliveries`; a kill while the run waited
on the model or wrote a step is the infrastructure's, and never fails the task.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager

# Tools that run a process of the task's (or reach far outside the worker): the keeper records
# their start at once instead of at its next tick, so a command that kills its worker within the
# first half-second still counts.
PROMPT = frozenset({"run_command", "run_python", "pip_install"})


class Activity:
    """The run's current activity: None, or the tool being run."""

    def __init__(self) -> None:
        self.tool: str | None = None
        self.changed = asyncio.Event()

    @property
    def label(self) -> str | None:
        return f"tool:{self.tool}"[:64] if self.tool else None

    @contextmanager
    def in_tool(self, name: str) -> Iterator[None]:
        self.tool = name
        if name in PROMPT:
            self.changed.set()
        try:
            yield
        finally:
            self.tool = None
            if name in PROMPT:  # and its end, so a kill in the next model call is not its
                self.changed.set()
