"""What one step adds to its task, worked out once for the one-statement writes.

app.run.steps_postgres and app.run.steps_sqlite write a step as one statement (PostgreSQL) or
three calls of the driver (SQLite) instead of the general write's SQLAlchemy statements
(app.run.steps.write_step). They take this: the task row's increments, the usage totals to add
(summed here, added up in SQL, so the row needs no read first), the events as stored and the
checkpoint. `covers` says which records they can write whole; the others (a task tree's totals,
journal rows to mark, nothing for the task row) take the general write.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from app.tasks.events import fitted

if TYPE_CHECKING:
    from app.run.step_record import Checkpoint, StepRecord

@dataclass
class StepChanges:
    events: list[tuple[str, dict[str, Any]]]  # redacted, JSON-safe, capped (tasks.events)
    calls: int
    prompt_tokens: int
    completion_tokens: int
    cost_usd: float
    model_used: str | None  # the agent's model, when an agent's call is among the calls
    phase: str | None
    usage: dict[str, float | int]  # added to the totals; tool_seconds and cpu_s rounded to 4
    peak_rss_kb: int | None  # the totals keep the maximum
    checkpoint: Checkpoint | None


def covers(record: StepRecord, has_tree: bool) -> bool:
    """Whether the one-statement writes store all of `record`."""
    return not has_tree and not record.done and not record.settle and bool(
        record.events or record.calls or record.tool_results or record.phase)


def changes_of(record: StepRecord) -> StepChanges:
    calls = record.calls
    agent_models = [c.model for c, role in calls if role == "agent"]
    usage: dict[str, float | int] = {}
    results = record.tool_results
    if results:  # as app.run.steps.add_resources adds them one by one
        usage["tool_calls"] = len(results)
        usage["tool_refusals"] = sum(int(r.refused) for r in results)
        usage["tool_seconds"] = sum(r.duration_ms for r in results) / 1000
        cpu = [r.data["cpu_s"] for r in results
               if isinstance((r.data or {}).get("cpu_s"), int | float)]
        if cpu:
            usage["cpu_s"] = sum(cpu)
    estimated = sum(1 for c, _ in calls if c.usage_estimated)
    if estimated:  # the provider reported no usage: these calls' tokens are estimates
        usage["estimated_llm_calls"] = estimated
    cached = sum(c.cached_tokens for c, _ in calls)
    if cached:  # prompt tokens the provider read from its cache
        usage["cached_prompt_tokens"] = cached
    rss = [int(r.data["peak_rss_kb"]) for r in results
           if isinstance((r.data or {}).get("peak_rss_kb"), int | float)]
    return StepChanges(
        events=fitted(record.events), calls=len(calls),
        prompt_tokens=sum(c.prompt_tokens for c, _ in calls),
        completion_tokens=sum(c.completion_tokens for c, _ in calls),
        cost_usd=float(sum(c.cost_usd for c, _ in calls)),
        model_used=agent_models[-1] if agent_models else None, phase=record.phase,
        usage=usage, peak_rss_kb=max(rss) if rss else None, checkpoint=record.checkpoint)
