"""The review phase: a separate inspector call scores the work against the task and its plan.

The inspector has its own prompt (templates/prompts/inspector.j2) and model
(agent.config.inspector_model) and answers JSON: {"score": 0-1, "problems": [...],
"verdict": "pass" | "revise"}. Work scoring below agent.config.review_threshold goes back to
build with the findings, at most agent.config.max_reviews reviews in all. Work that has not
passed after the last allowed review fails with the findings (ReviewFailed), or, with
agent.config.on_review_failure = "completed_with_warnings", completes with them as warnings:
the status stays `completed` and Task.review.outcome says `completed_with_warnings`. Each
review is a `review` event and is kept on Task.review; the agent's reviews_passed/reviews_failed
are the Beta posterior the scheduler ranks agents by. With the inspector off, review passes
unasked. A playbook runs the inspector where it has an `inspect: true` step (`judge`).
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
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
from app.run.errors import ReviewFailed
from app.run.state import LoopState
from app.sandbox import fs

MAX_PLAN_CHARS = 6000
MAX_FILE_CHARS = 3000
MAX_SHOWN_CHARS = 12_000
PASSED, FAILED, WARNED = "passed", "failed", "completed_with_warnings"
OUTCOMES = (FAILED, WARNED)  # what agent.config.on_review_failure may say
MAX_FILES = 200


@dataclass(frozen=True)
class InspectorConfig:
    """The inspector settings an agent's config JSON carries."""

    enabled: bool
    model: str
    threshold: float
    max_reviews: int
    on_failure: str = FAILED

    @classmethod
    def of(cls, agent: Agent) -> InspectorConfig:
        config = agent.config or {}
        on_failure = str(config.get("on_review_failure") or FAILED)
        return cls(enabled=bool(config.get("inspector", False)),
                   model=str(config.get("inspector_model") or agent.model),
                   threshold=float(config.get("review_threshold", 0.7)),
                   max_reviews=max(1, int(config.get("max_reviews", 2))),
                   on_failure=on_failure if on_failure in OUTCOMES else FAILED)


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
    """PLAN.md and the produced files (small text ones shown) for the inspector to judge, read
    through fs (links, FIFOs and hard-linked files are neither followed nor read)."""
    try:
        plan = fs.read_head(root, "PLAN.md", MAX_PLAN_CHARS)[0].decode(errors="replace")
    except fs.PathRefused:
        plan = ""
    files: list[dict[str, Any]] = []
    shown = 0
    for sub in ("output", "src"):
        try:
            found = list(itertools.islice(fs.files(root, sub), MAX_FILES))
        except fs.PathRefused:
            continue
        for e in found:
            entry: dict[str, Any] = {"path": f"{sub}/{e.path}", "bytes": e.size, "text": None}
            if shown < MAX_SHOWN_CHARS and e.size <= 50_000:
                with contextlib.suppress(fs.PathRefused, UnicodeDecodeError):
                    entry["text"] = fs.read_bytes(root, entry["path"], 50_000).decode()[
                        :MAX_FILE_CHARS]
                    shown += len(entry["text"])
            files.append(entry)
    return plan[:MAX_PLAN_CHARS], files[:MAX_FILES]


async def inspect(
    ctx: RunContext, config: InspectorConfig, state: LoopState
) -> dict[str, Any]:
    """One inspector call; the normalised verdict, or a passing one marked `unusable`."""
    plan, files = await asyncio.to_thread(_material, ctx.workspace.root)
    messages = [
        {"role": "system", "content": render_prompt("inspector", threshold=config.threshold)},
        {"role": "user", "content": render_prompt(
            "inspector_input", task=ctx.task, plan=plan, files=files,
            summaries=state.summaries, previous=state.reviews)},
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


def _outcome(result: dict[str, Any], config: InspectorConfig) -> str:
    """passed, revise (another round is allowed), or the agent's on_failure after the last."""
    if result["passed"]:
        return PASSED
    return "revise" if result["round"] < config.max_reviews else config.on_failure


def findings(result: dict[str, Any]) -> str:
    """The inspector's verdict as one line for the task's error or a warning."""
    problems = "; ".join(result.get("problems") or []) or "no problems listed"
    return (f"the inspector did not pass the work after {result['round']} review(s) (score"
            f" {result['score']} < {result['threshold']}): {problems}")[:4000]


async def judge(ctx: RunContext, config: InspectorConfig, state: LoopState
                ) -> dict[str, Any]:
    """One review round: inspect, decide, keep it on the task and emit it as a `review` event."""
    rounds: list[dict[str, Any]] = state.reviews
    result = await inspect(ctx, config, state)
    passed = result["verdict"] == "pass" and (result["score"] is None
                                              or result["score"] >= config.threshold)
    result.update(round=len(rounds) + 1, threshold=config.threshold, passed=passed)
    result["outcome"] = _outcome(result, config)
    result["action"] = {PASSED: "accept", "revise": "revise", FAILED: "fail",
                        WARNED: "accept_with_warnings"}[result["outcome"]]
    rounds.append(dict(result))
    await _record(ctx, result, rounds)
    await ctx.emit("review", result)
    return result


async def review(ctx: RunContext, messages: list[dict[str, Any]], state: LoopState) -> bool:
    """Run the review phase; False means the work went back to build with the findings.

    Raises ReviewFailed when the last allowed review did not pass and the agent fails such work.
    """
    await ctx.set_phase("review")
    config = InspectorConfig.of(ctx.agent)
    if not config.enabled:
        # with the step's record: nothing but the task's end comes next, which writes it
        ctx.record("review", {"verdict": "pass", "skipped": True,
                              "reason": "the inspector is off for this agent"})
        return True
    result = await judge(ctx, config, state)
    if result["outcome"] == FAILED:
        raise ReviewFailed(findings(result))
    if result["outcome"] != "revise":
        return True
    messages.append({"role": "user", "content": render_prompt(
        "review_findings", score=result["score"], problems=result["problems"],
        threshold=config.threshold)})
    return False
