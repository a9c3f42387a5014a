"""Condensing a conversation that no longer fits the model's context window.

Used when a provider refuses a request as too long, and before sending when the conversation
nears the window the agent's config gives for the model (`context_windows: {model: tokens}`, or
`context_window` for every model). What is kept and what goes, in this order:

    kept     the system prompt, the first user message (the task), the last turns
    first    tool outputs older than the last turns are cut to their first lines
    then     the older turns are replaced by one message summarising what was cut
             (templates/prompts/condensed.j2: each call made and how it went)
    last     fewer last turns, down to the latest one, with their tool outputs shortened

No model is asked to summarise: the summary is built from the calls themselves, so condensing
costs nothing and cannot fail.
"""

from __future__ import annotations

import json
from typing import Any

from app.core.prompts import render_prompt
from app.run.budget import estimate_prompt_tokens

Messages = list[dict[str, Any]]
KEEP_TURNS = 4
SHORT_OUTPUT = 300
NEAR_WINDOW = 0.8  # condense before sending once the prompt reaches this share of the window


def window_for(config: dict[str, Any] | None, model: str) -> int | None:
    """The context window (tokens) the agent's config gives `model`, if any."""
    config = config or {}
    windows = config.get("context_windows") or {}
    value = windows.get(model) if isinstance(windows, dict) else None
    value = value or config.get("context_window")
    try:
        return int(value) if value else None
    except (TypeError, ValueError):
        return None


def condense(messages: Messages, tools: list[Any] | None, *, target_tokens: int) -> Messages | None:
    """A shorter conversation aiming at `target_tokens`; None when nothing more can be cut."""
    head = _head(messages)
    before = estimate_prompt_tokens(messages, tools)
    candidate = messages
    for keep in range(KEEP_TURNS, 0, -1):
        start = _tail_start(messages, len(head), keep)
        middle, tail = messages[len(head):start], messages[start:]
        shortened = [*head, *map(_shorten, middle), *tail]
        if middle and _fits(shortened, tools, target_tokens):
            return shortened
        candidate = [*head, *_summary(middle), *tail]
        if _fits(candidate, tools, target_tokens):
            return candidate
    # even the last turn alone is too long: its tool outputs are shortened too
    candidate = [*candidate[:-len(tail)], *map(_shorten, tail)] if tail else candidate
    return candidate if estimate_prompt_tokens(candidate, tools) < before else None


def _fits(messages: Messages, tools: list[Any] | None, target: int) -> bool:
    return estimate_prompt_tokens(messages, tools) <= target


def _head(messages: Messages) -> Messages:
    """The system prompt(s) and the first user message: never cut."""
    head: Messages = []
    for msg in messages:
        head.append(msg)
        if msg.get("role") == "user":
            break
    return head if len(head) < len(messages) else messages[:1]


def _tail_start(messages: Messages, floor: int, turns: int) -> int:
    """Where the last `turns` turns begin: at an assistant or user message, never at a tool
    result (a tool message must follow the call it answers)."""
    starts = [i for i in range(floor, len(messages)) if messages[i].get("role") != "tool"]
    if not starts:
        return len(messages)
    assistant = [i for i in starts if messages[i].get("role") == "assistant"]
    chosen = assistant[-turns] if len(assistant) >= turns else (assistant or starts)[0]
    return max(floor, chosen)


def _shorten(msg: dict[str, Any]) -> dict[str, Any]:
    content = msg.get("content")
    if msg.get("role") != "tool" or not isinstance(content, str) or len(content) <= SHORT_OUTPUT:
        return msg
    cut = len(content) - SHORT_OUTPUT
    return {**msg, "content": f"{content[:SHORT_OUTPUT]}\n[… {cut} characters cut]"}


def _summary(middle: Messages) -> Messages:
    """One user message saying what the cut turns did."""
    if not middle:
        return []
    outcomes = {m.get("tool_call_id"): str(m.get("content") or "") for m in middle
                if m.get("role") == "tool"}
    calls = []
    for msg in middle:
        for call in msg.get("tool_calls") or []:
            fn = call.get("function") or {}
            calls.append({"name": fn.get("name"), "arguments": _brief(fn.get("arguments")),
                          "outcome": _brief(outcomes.get(call.get("id"), ""))})
    notes = [_brief(m.get("content")) for m in middle
             if m.get("role") in ("user", "assistant") and m.get("content")]
    return [{"role": "user", "content": render_prompt(
        "condensed", cut=len(middle), calls=calls, notes=notes[-5:])}]


def _brief(value: Any, limit: int = 120) -> str:
    text = value if isinstance(value, str) else json.dumps(value, default=str)
    text = " ".join(text.split())
    return text if len(text) <= limit else text[: limit - 1] + "…"
