"""A ToolContext on a temporary workspace whose `emit` records events (for tool tests)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from app.core.config import Settings
from app.sandbox.workspace import Workspace
from app.tools.registry import ToolContext


class Events(list[tuple[str, dict[str, Any]]]):
    """Every (type, data) a tool emitted, in order."""

    async def __call__(self, type_: str, data: dict[str, Any]) -> None:
        self.append((type_, data))

    def of(self, type_: str) -> list[dict[str, Any]]:
        return [d for t, d in self if t == type_]


def make_context(root: Path, *, settings: Settings | None = None, task_id: int = 1,
                 **kwargs: Any) -> tuple[ToolContext, Events]:
    """A fresh workspace at `root` and a context for it; returns (ctx, events)."""
    ws = Workspace(root)
    ws.create(title="test task", description="a task for the tool tests")
    events = Events()
    ctx = ToolContext(task_id=task_id, workspace=ws, settings=settings or Settings(),
                      emit=events, agent_name="tester", **kwargs)
    return ctx, events
