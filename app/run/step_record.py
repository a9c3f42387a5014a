"""StepRecord: what one step of a run has done and not yet written (app.run.context collects
it, app.run.steps writes it in one transaction)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from app.run import llm
from app.tools.registry import Dispatched


@dataclass
class Checkpoint:
    """A checkpoint as written: the loop state, and the conversation as a delta of what the
    store holds already (`messages[start:]` are new or changed; the rest are stored)."""

    messages: list[dict[str, Any]]  # the whole conversation, as it stands
    start: int
    stored: int  # how many messages the store held (those past the conversation's end go)
    state: dict[str, Any]
    phase: str | None

    @property
    def new(self) -> list[dict[str, Any]]:
        return self.messages[self.start:]

    @property
    def shrunk(self) -> bool:
        return self.stored > len(self.messages)


@dataclass
class StepRecord:
    events: list[tuple[str, dict[str, Any]]] = field(default_factory=list)
    calls: list[tuple[llm.Completion, str]] = field(default_factory=list)  # (completion, role)
    tool_results: list[Dispatched] = field(default_factory=list)
    phase: str | None = None
    checkpoint: Checkpoint | None = None
    settle: list[int] = field(default_factory=list)  # journal rows this checkpoint covers
    done: list[tuple[int, dict[str, Any]]] = field(default_factory=list)  # (row, result)

    def __bool__(self) -> bool:
        return bool(self.events or self.calls or self.tool_results or self.phase
                    or self.checkpoint or self.settle or self.done)

    def then(self, later: StepRecord) -> StepRecord:
        """This record followed by one recorded after it (for a write that did not happen)."""
        return StepRecord(
            events=self.events + later.events, calls=self.calls + later.calls,
            tool_results=self.tool_results + later.tool_results,
            phase=later.phase if later.phase is not None else self.phase,
            checkpoint=later.checkpoint if later.checkpoint is not None else self.checkpoint,
            settle=self.settle + later.settle, done=self.done + later.done)
