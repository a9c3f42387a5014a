"""LoopState: what the agent loop carries between steps and across runs (in the checkpoint).

One typed object instead of a dict of string keys shared by loop, delegation, inspector, stuck
and waiting. It is stored as JSON with the checkpoint; keys it does not know are dropped on load.
"""

from __future__ import annotations

from dataclasses import dataclass, field, fields
from typing import Any


def json_copy(value: Any) -> Any:
    """A copy of a JSON-like value: dicts and lists copied all the way down, the rest (strings,
    numbers) shared. A tenth of what dataclasses.asdict costs (it goes through copy.deepcopy:
    ~0.6 ms a step for this state and the stuck detector's)."""
    if isinstance(value, dict):
        return {k: json_copy(v) for k, v in value.items()}
    if isinstance(value, list):
        return [json_copy(v) for v in value]
    return value


@dataclass
class LoopState:
    # the phases (loop.py)
    phases_done: list[str] = field(default_factory=list)
    current: str | None = None  # the phase whose prompt was sent
    summaries: dict[str, str] = field(default_factory=dict)  # phase -> the model's summary
    # reviews (inspector.py): one dict per round
    reviews: list[dict[str, Any]] = field(default_factory=list)
    # being stuck (stuck.py): the detector's counters, the ladder, the escalated model
    detector: dict[str, Any] | None = None
    stuck: dict[str, Any] = field(default_factory=lambda: {"warned": False, "escalations": 0})
    model: str | None = None
    # delegation (delegation.py): subtasks created and those whose results were handed over
    children: list[int] = field(default_factory=list)
    reported_children: list[int] = field(default_factory=list)
    awaiting_children: bool = False  # pause before the next call: a subtask was created
    question: str | None = None  # pause before the next call: ask_user was called
    # waiting.py: the wait the task paused with, taken when the run resumes
    wait: dict[str, Any] | None = None

    @classmethod
    def from_checkpoint(cls, saved: dict[str, Any] | None) -> LoopState:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in (saved or {}).items() if k in known})

    def to_checkpoint(self) -> dict[str, Any]:
        return {f.name: json_copy(getattr(self, f.name)) for f in fields(self)}
