"""Noticing a stuck agent, and what to do about it: warn, escalate to a stronger model, then fail.

A `StuckDetector` watches each step's tool calls and their results. It reports the agent as stuck
when the same call (same tool, same arguments) repeats `repeat` times in a row, when `no_progress`
steps pass without a successful call it had not made before, or when `failures` steps in a row
fail (tool errors, refusals, non-zero exit codes: a test suite that keeps failing).

The response is a ladder kept in the checkpointed state, so a resumed task stays on its rung:

    warn        tell the model (templates/prompts/stuck_warning.j2); event `stuck`
    escalate    switch to the next model in agent.escalation_models (escalation.j2); `escalated`
    fail        AgentFailed with the reason, once no stronger model is left
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field, fields
from typing import Any

from app.core.prompts import render_prompt
from app.run.context import RunContext
from app.run.errors import AgentFailed
from app.run.state import LoopState, json_copy
from app.tools.registry import Dispatched


@dataclass
class StuckDetector:
    """Counters over the last steps; `observe` returns a reason once the agent is stuck."""

    repeat: int = 3
    no_progress: int = 8
    failures: int = 4
    last_call: str | None = None
    same_calls: int = 0
    idle_steps: int = 0
    failed_steps: int = 0
    seen: list[str] = field(default_factory=list)

    @classmethod
    def for_agent(cls, config: dict[str, Any], saved: dict[str, Any] | None) -> StuckDetector:
        limits = {"repeat": int(config.get("stuck_repeat", 3)),
                  "no_progress": int(config.get("stuck_no_progress", 8)),
                  "failures": int(config.get("stuck_failures", 4))}
        return cls(**{**(saved or {}), **limits})

    def to_state(self) -> dict[str, Any]:
        return {f.name: json_copy(getattr(self, f.name)) for f in fields(self)}

    def reset(self) -> None:
        self.last_call, self.same_calls, self.idle_steps, self.failed_steps = None, 0, 0, 0

    def observe(self, calls: list[dict[str, Any]], results: list[Dispatched]) -> str | None:
        """Take one step (the reply's tool calls and their outcomes); the reason if stuck."""
        sigs = [_signature(c) for c in calls]
        step = "|".join(sigs)
        self.same_calls = self.same_calls + 1 if step and step == self.last_call else 1
        self.last_call = step or None
        progress = any(r.ok and s not in self.seen for s, r in zip(sigs, results, strict=True))
        self.seen.extend(s for s in sigs if s not in self.seen)
        self.seen = self.seen[-200:]
        self.idle_steps = 0 if progress else self.idle_steps + 1
        failed = bool(results) and all(_failed(r) for r in results)
        self.failed_steps = self.failed_steps + 1 if failed else 0
        if step and self.same_calls >= self.repeat:
            return f"the same call {_short(step)} was repeated {self.same_calls} times in a row"
        if self.failed_steps >= self.failures:
            return f"{self.failed_steps} steps in a row failed (last: {_short(results[-1].output)})"
        if self.idle_steps >= self.no_progress:
            return f"no progress for {self.idle_steps} steps"
        return None


def _signature(call: dict[str, Any]) -> str:
    fn = call.get("function") or {}
    raw = fn.get("arguments") or "{}"
    try:
        args = json.dumps(json.loads(raw), sort_keys=True) if isinstance(raw, str) else raw
    except json.JSONDecodeError:
        args = raw
    return f"{fn.get('name')}({args})"


def _failed(result: Dispatched) -> bool:
    code = result.data.get("exit_code")
    return not result.ok or (isinstance(code, int) and code != 0)


def _short(text: str, limit: int = 160) -> str:
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"


async def respond(
    ctx: RunContext, reason: str, messages: list[dict[str, Any]], state: LoopState
) -> None:
    """Climb one rung of the ladder for `reason`: warn, else escalate, else fail the task."""
    ladder = state.stuck
    if not ladder["warned"]:
        ladder["warned"] = True
        await ctx.emit("stuck", {"reason": reason, "action": "warn",
                                 "model": current_model(ctx, state)})
        messages.append({"role": "user", "content": render_prompt("stuck_warning", reason=reason)})
        return
    stronger = ctx.agent.escalation_models[ladder["escalations"]:]
    if not stronger:
        raise AgentFailed(f"stuck: {reason}; no stronger model left to escalate to")
    before = current_model(ctx, state)
    ladder["escalations"] += 1
    state.model = stronger[0]
    await ctx.emit("escalated", {"from": before, "to": stronger[0], "reason": reason})
    messages.append({"role": "user", "content": render_prompt(
        "escalation", reason=reason, model=stronger[0])})


def current_model(ctx: RunContext, state: LoopState) -> str:
    return state.model or ctx.agent.model


def models_for(ctx: RunContext, state: LoopState) -> list[str]:
    """The chain the next call uses: the escalated model alone, or the agent's own chain."""
    if state.model:
        return [state.model]
    return ctx.models()
