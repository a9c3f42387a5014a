"""What a tool can raise.

    Exception
    ├── ToolError          the call failed; the message goes back to the model as an observation
    │   └── ToolRefused    a policy said no (path, allow-list, URL); also recorded as an event
    └── ToolControl        not an error: the tool asks the loop to change course
        ├── FinishRequested     `finish(summary)` was called
        └── WaitRequested       the task waits (for a person's answer or its children)
"""

from __future__ import annotations


class ToolError(Exception):
    """A tool failed in a way the model can correct."""


class ToolRefused(ToolError):
    """A policy refused the call; the reason is shown to the model and recorded."""


class ToolControl(Exception):
    """Raised by a tool to steer the agent loop."""


class FinishRequested(ToolControl):
    def __init__(self, summary: str) -> None:
        super().__init__(summary)
        self.summary = summary


class WaitRequested(ToolControl):
    def __init__(self, reason: str, *, question: str | None = None) -> None:
        super().__init__(reason)
        self.reason = reason
        self.question = question
