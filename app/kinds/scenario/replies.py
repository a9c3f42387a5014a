"""Reading the models' structured replies: an actor's move, the narrator's scene, the analysis.

Model output is untrusted text. Actor replies are parsed strictly (a wrong shape or an unknown
target is a `ReplyError` whose message goes back to the model once); the narrator's and the
analyst's replies are parsed leniently (plain prose is kept as the scene or the summary).
"""

from __future__ import annotations

import json
import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator

from app.kinds.scenario.relationships import INTERACTION_TYPES

MAX_CONTENT = 4000
_FENCE = re.compile(r"^```(?:json)?\s*|\s*```$", re.IGNORECASE)


class ReplyError(ValueError):
    """A reply the engine cannot use; the message says why, for the model to correct."""


class ActorMove(BaseModel):
    """One actor's move in a turn."""

    model_config = ConfigDict(extra="ignore")

    action: Literal["speak", "act", "silent"] = "speak"
    target: str | None = None
    interaction_type: str = "chat"
    content: str = Field(default="", max_length=MAX_CONTENT)
    sentiment: float = 0.0
    emotional_state: str | None = Field(default=None, max_length=100)

    @field_validator("sentiment", mode="before")
    @classmethod
    def _clamp(cls, v: Any) -> float:
        # A model that says 1.5 means "very warm": keep the intent, not the number.
        return max(-1.0, min(1.0, float(v)))

    @field_validator("interaction_type", mode="before")
    @classmethod
    def _lower(cls, v: Any) -> str:
        return str(v or "chat").strip().lower()


def extract_json(text: str) -> Any:
    """The JSON object in a reply, tolerating code fences and prose around it."""
    body = _FENCE.sub("", (text or "").strip())
    try:
        return json.loads(body)
    except json.JSONDecodeError:
        start, end = body.find("{"), body.rfind("}")
        if start == -1 or end <= start:
            raise ReplyError("the reply is not a JSON object") from None
        try:
            return json.loads(body[start:end + 1])
        except json.JSONDecodeError as exc:
            raise ReplyError(f"the reply is not valid JSON ({exc.msg})") from None


def parse_actor(text: str, *, me: str, cast: list[str], can_answer_user: bool,
                must_answer_user: bool = False) -> ActorMove:
    """An actor's reply as a move, or ReplyError naming what is wrong with it; an actor a
    participant spoke to (`must_answer_user`) has to answer them (target "user")."""
    data = extract_json(text)
    if not isinstance(data, dict):
        raise ReplyError("the reply must be one JSON object")
    try:
        move = ActorMove.model_validate(data)
    except (ValidationError, ValueError, TypeError) as exc:
        raise ReplyError(f"the reply has the wrong shape: {_first_error(exc)}") from None
    if move.interaction_type not in INTERACTION_TYPES:
        raise ReplyError(f"unknown interaction_type {move.interaction_type!r}; "
                         f"use one of {', '.join(INTERACTION_TYPES)}")
    if must_answer_user and (move.action == "silent" or move.target is None
                             or move.target.strip().lower() != "user"):
        raise ReplyError('the visitor ("user") spoke to you: answer them this turn, with '
                         'target "user"')
    if move.action == "silent":
        return move.model_copy(update={"target": None})
    valid = [n for n in cast if n != me] + ["all"] + (["user"] if can_answer_user else [])
    if move.target is None:
        raise ReplyError("a move that is not silent needs a target")
    match = match_name(move.target, valid)
    if match is None:
        raise ReplyError(f"unknown target {move.target!r}; valid targets: {', '.join(valid)}")
    if not move.content.strip():
        raise ReplyError("a move that is not silent needs content")
    return move.model_copy(update={"target": match})


def match_name(name: str, valid: list[str]) -> str | None:
    """The valid name meant by `name` (exact, else case-insensitive, else a unique prefix)."""
    if name in valid:
        return name
    lowered = {v.lower(): v for v in valid}
    if name.strip().lower() in lowered:
        return lowered[name.strip().lower()]
    hits = [v for v in valid if v.lower().startswith(name.strip().lower()) and name.strip()]
    return hits[0] if len(hits) == 1 else None


def _first_error(exc: Exception) -> str:
    if isinstance(exc, ValidationError):
        err = exc.errors(include_url=False)[0]
        return f"{'.'.join(str(p) for p in err['loc'])}: {err['msg']}"
    return str(exc)


def parse_narration(text: str, cast: list[str]) -> dict[str, Any]:
    """{scene, changes, order}: the narrator's reply; prose without JSON becomes the scene."""
    try:
        data = extract_json(text)
    except ReplyError:
        data = None
    if not isinstance(data, dict):
        return {"scene": (text or "").strip()[:MAX_CONTENT], "changes": "", "order": []}
    raw_order = data.get("order")
    order = [o for o in (raw_order if isinstance(raw_order, list) else [])
             if isinstance(o, str) and o in cast]
    return {
        "scene": str(data.get("scene") or "").strip()[:MAX_CONTENT],
        "changes": str(data.get("changes") or "").strip()[:MAX_CONTENT],
        "order": list(dict.fromkeys(order)),
    }


ANALYSIS_KEYS = ("summary", "relationship_changes", "alliances", "conflicts", "central",
                 "turning_points", "objectives")


def parse_analysis(text: str) -> dict[str, Any]:
    """The analyst's findings; prose without JSON is kept as the summary."""
    try:
        data = extract_json(text)
    except ReplyError:
        data = None
    if not isinstance(data, dict):
        return {"summary": (text or "").strip()[:20_000]}
    return {k: data[k] for k in ANALYSIS_KEYS if k in data}
