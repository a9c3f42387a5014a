"""The review phase: a separate inspector call scores the work against the task and its plan.

The inspector has its own prompt (templates/prompts/inspector.j2) and model
(agent.config.inspector_model) and answers JSON: {"score": 0-1, "problems": [...],
"verdict": "pass" | "revise"}. Work scoring below agent.config.review_threshold goes back to
build with the findings, at most agent.config.max_reviews reviews in all. Each review is a
`review` event and is kept on Task.review; the agent's reviews_passed/reviews_failed are the
Beta posterior the scheduler ranks agents by. With the inspector off, review passes unasked.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import update
from sqlmodel import col

from app.core.db import session_scope
from app.core.prompts import render_prompt
from app.models import Agent, Task
from app.run.context import RunContext

MAX_PLAN_CHARS = 6000
MAX_FILE_CHARS = 3000
MAX_SHOWN_CHARS = 12_000


@dataclass(frozen=True)
class InspectorConfig:
    """The inspector settings an agent's config JSON carries."""

    enabled: bool
    model: str
    threshold: float
    max_reviews: int

    @classmethod
    def of(cls, agent: Agent) -> InspectorConfig:
        config = agent.config or {}
        return cls(enabled=bool(config.get("inspector", False)),
                   model=str(config.get("inspector_model") or agent.model),
                   threshold=float(config.get("review_threshold", 0.7)),
                   max_reviews=max(1, int(config.get("max_reviews", 2))))


def parse_verdict(content: str) -> dict[str, Any]:
    """The inspector's JSON reply, normalised; ValueError when it is not usable."""
    text = content.strip()
    if text.startswith("```"):
        text = text.strip("`").removeprefix("json").strip()
    data = json.loads(text)
    if not isinstance(data, dict):
        raise ValueError("the reply is not a JSON object")
    score = min(1.0, max(0.0, float(data["score"])))
    problems = [str(p)[:1000] for p in (data.get("problems") or [])][:30]
    verdict = str(data.get("verdict", "")).lower()
    if verdict not in ("pass", "revise"):
        raise ValueError(f"verdict must be pass or revise, not {verdict!r}")
    return {"score": round(score, 4), "problems": problems, "verdict": verdict}


def _material(root: Path) -> tuple[str, list[dict[str, Any]]]:
    """PLAN.md and the produced files (small text ones shown) for the inspector to judge."""
    plan_path = root / "PLAN.md"
    plan = plan_path.read_text(errors="replace")[:MAX_PLAN_CHARS] if plan_path.is_file() else ""
    files, shown = [], 0
    for sub in ("output", "src"):
        base = root / sub
        if not base.is_dir():
            continue
        for path in sorted(p for p in base.rglob("*") if p.is_file() and not p.is_symlink()):
            entry: dict[str, Any] = {"path": str(path.relative_to(root)),
                                     "bytes": path.stat().st_size, "text": None}
            if shown < MAX_SHOWN_CHARS and entry["bytes"] <= 50_000:
                try:
                    entry["text"] = path.read_text()[:MAX_FILE_CHARS]
                    shown += len(entry["text"])
                except UnicodeDecodeError:
                    pass
            files.append(entry)
    return plan, files[:200]


async def inspect(
    ctx: RunContext, config: InspectorConfig, state: dict[str, Any]
) -> dict[str, Any]:
    """One inspector call; the normalised verdict, or a passing one marked `unusable`."""
    plan, files = _material(ctx.workspace.root)
    messages = [
        {"role": "system", "content": render_prompt("inspector", threshold=config.threshold)},
        {"role": "user", "content": render_prompt(
            "inspector_input", task=ctx.task, plan=plan, files=files,
            summaries=state.get("summaries", {}), previous=state.get("reviews", []))},
    ]
    completion = await ctx.chat(messages, models=[config.model], role="inspector",
                                response_format={"type": "json_object"})
    try:
        verdict = parse_verdict(completion.content)
    except (ValueError, KeyError, TypeError) as exc:
        # a broken inspector must not hold the work hostage: pass it, say so, count nothing
        return {"score": None, "problems": [], "verdict": "pass", "model": completion.model,
                "unusable": f"{type(exc).__name__}: {exc}"[:500]}
    return {**verdict, "model": completion.model}


async def _record(ctx: RunContext, result: dict[str, Any], rounds: list[dict[str, Any]]) -> None:
    """Keep the review on the task and count it in the agent's record."""
    column = Agent.reviews_passed if result["passed"] else Agent.reviews_failed
    async with session_scope() as session:
        await session.execute(update(Task).where(col(Task.id) == ctx.task_id)
                              .values(review={**result, "history": rounds}))
        if "unusable" not in result:
            await session.execute(update(Agent).where(col(Agent.id) == ctx.agent.id)
                                  .values({column: column + 1}))


async def review(ctx: RunContext, messages: list[dict[str, Any]], state: dict[str, Any]) -> bool:
    """Run the review phase; False means the work went back to build with the findings."""
    await ctx.set_phase("review")
    config = InspectorConfig.of(ctx.agent)
    if not config.enabled:
        await ctx.emit("review", {"verdict": "pass", "skipped": True,
                                  "reason": "the inspector is off for this agent"})
        return True
    rounds: list[dict[str, Any]] = state.setdefault("reviews", [])
    result = await inspect(ctx, config, state)
    passed = result["verdict"] == "pass" and (result["score"] is None
                                              or result["score"] >= config.threshold)
    result.update(round=len(rounds) + 1, threshold=config.threshold, passed=passed)
    final = passed or result["round"] >= config.max_reviews
    result["action"] = "accept" if final else "revise"
    rounds.append(dict(result))
    await _record(ctx, result, rounds)
    await ctx.emit("review", result)
    if final:
        return True
    messages.append({"role": "user", "content": render_prompt(
        "review_findings", score=result["score"], problems=result["problems"],
        threshold=config.threshold)})
    return False
