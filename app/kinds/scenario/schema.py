"""What a scenario file may say, and validation that names every problem in it at once.

A scenario is plain data (templates/scenarios/<name>.yaml or a stored template). `validate`
returns the parsed `Scenario` or a list of problems as `{"loc": [...], "msg": "..."}`, the same
shape FastAPI uses for 422 bodies, so the API can hand them back unchanged.
"""

from __future__ import annotations

import copy
import re
from typing import Any, Literal

from pydantic import BaseModel, ConfigDict, Field, ValidationError

TRAITS = ("openness", "conscientiousness", "extraversion", "agreeableness", "neuroticism")
MAX_TURNS = 100
MAX_CHARACTERS = 20
NAME_RE = r"^[a-z0-9][a-z0-9_-]{0,63}$"

Problem = dict[str, Any]


class Character(BaseModel):
    """One actor: who they are, how they lean (Big Five, 0–1) and what they want."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(min_length=1, max_length=60)
    role: str = Field(default="", max_length=200)
    persona: str = Field(default="", max_length=4000)
    traits: dict[str, float] = Field(default_factory=dict)
    goals: list[str] = Field(default_factory=list, max_length=20)
    emotional_state: str = Field(default="calm", max_length=100)
    model: str | None = Field(default=None, max_length=200)


class StartingRelationship(BaseModel):
    """How two characters stand with each other before turn 1."""

    model_config = ConfigDict(extra="forbid")

    between: list[str] = Field(min_length=2, max_length=2)
    strength: float = Field(default=0.0, ge=-1.0, le=1.0)
    trust: float = Field(default=0.5, ge=0.0, le=1.0)
    note: str = Field(default="", max_length=500)


class Narrator(BaseModel):
    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    style: str = Field(default="concise, vivid, present tense", max_length=500)
    decides_order: bool = Field(default=False, description="The narrator orders the actors")


class Analyst(BaseModel):
    model_config = ConfigDict(extra="forbid")

    enabled: bool = True
    every_k_turns: int | None = Field(default=None, ge=1, le=MAX_TURNS)
    look_for: list[str] = Field(default_factory=list, max_length=20)


class Scenario(BaseModel):
    """A whole scenario: setting, cast, starting ties, narrator and analyst."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=NAME_RE)
    title: str = Field(min_length=1, max_length=200)
    setting: str = Field(min_length=1, max_length=8000)
    mood: str = Field(default="", max_length=500)
    objectives: list[str] = Field(default_factory=list, max_length=20)
    turns: int | None = Field(default=None)
    duration_minutes: int | None = Field(default=None, ge=1)
    minutes_per_turn: int | None = Field(default=None, ge=1)
    turn_order: Literal["fixed", "shuffled", "simultaneous"] = Field(
        default="fixed", description=(
            "fixed: cast order; shuffled: a seeded order per turn; simultaneous: every actor "
            "moves from the same state at the start of the turn, so their model calls run "
            "concurrently (moves are applied afterwards in cast order, or the narrator's)"))
    distributed: bool = Field(default=False, description=(
        "With turn_order simultaneous: each actor's turn is its own Celery task when live "
        "workers are registered (else the calls run concurrently in the run's own worker)"))
    actor_task_timeout_s: int = Field(default=120, ge=1, le=3600, description=(
        "How long a distributed turn waits for an actor's task before computing the move "
        "itself"))
    characters: list[Character] = Field(min_length=2, max_length=MAX_CHARACTERS)
    relationships: list[StartingRelationship] = Field(default_factory=list)
    narrator: Narrator = Field(default_factory=Narrator)
    analyst: Analyst = Field(default_factory=Analyst)

    @property
    def turn_count(self) -> int:
        """Turns to play: `turns`, or the duration divided by the time one turn stands for."""
        if self.turns is not None:
            return self.turns
        assert self.duration_minutes and self.minutes_per_turn
        return max(1, self.duration_minutes // self.minutes_per_turn)

    def character(self, name: str) -> Character | None:
        return next((c for c in self.characters if c.name == name), None)

    @property
    def cast(self) -> list[str]:
        return [c.name for c in self.characters]


def validate(data: Any) -> tuple[Scenario | None, list[Problem]]:
    """Parse a scenario; on failure list every problem (field errors and cross-references)."""
    if not isinstance(data, dict):
        return None, [{"loc": [], "msg": "a scenario must be a mapping"}]
    problems = [_problem(e) for e in _field_errors(data)]
    problems += _cross_check(data)
    problems = _dedupe(problems)
    if problems:
        return None, problems
    return Scenario.model_validate(data), []


def _field_errors(data: dict[str, Any]) -> list[Any]:
    try:
        Scenario.model_validate(data)
    except ValidationError as exc:
        return list(exc.errors(include_url=False))
    return []


def _problem(err: Any) -> Problem:
    loc = list(err["loc"])
    return {"loc": loc, "msg": err["msg"]}


def _cross_check(data: dict[str, Any]) -> list[Problem]:
    """The checks pydantic's per-field rules cannot make: names, traits, turns, references."""
    problems: list[Problem] = []
    names: list[str] = []
    chars = data.get("characters")
    for i, char in enumerate(chars if isinstance(chars, list) else []):
        if not isinstance(char, dict):
            continue
        name = char.get("name")
        if isinstance(name, str):
            if name in names:
                problems.append({"loc": ["characters", i, "name"],
                                 "msg": f"duplicate character {name!r}"})
            names.append(name)
            if name.lower() in ("user", "all"):
                problems.append({"loc": ["characters", i, "name"], "msg": (
                    f"{name!r} is reserved (it addresses the user or everyone)")})
        problems += _trait_problems(char.get("traits"), ["characters", i, "traits"])
    problems += _relationship_problems(data.get("relationships"), set(names))
    problems += _turn_problems(data)
    if data.get("distributed") is True and data.get("turn_order") != "simultaneous":
        problems.append({"loc": ["distributed"], "msg": (
            "distributed needs turn_order: simultaneous (only then are the actors' moves "
            "independent of each other within a turn)")})
    return problems


def _trait_problems(traits: Any, loc: list[Any]) -> list[Problem]:
    if not isinstance(traits, dict):
        return []
    problems = []
    for key, value in traits.items():
        if key not in TRAITS:
            problems.append({"loc": [*loc, key],
                             "msg": f"unknown trait {key!r}; known traits: {', '.join(TRAITS)}"})
        elif not isinstance(value, int | float) or isinstance(value, bool) or not 0 <= value <= 1:
            problems.append({"loc": [*loc, key], "msg": f"trait {key!r} must be a number 0–1"})
    return problems


def _relationship_problems(rels: Any, names: set[str]) -> list[Problem]:
    problems = []
    for i, rel in enumerate(rels if isinstance(rels, list) else []):
        between = rel.get("between") if isinstance(rel, dict) else None
        if not isinstance(between, list):
            continue
        for j, who in enumerate(between):
            if isinstance(who, str) and who not in names:
                problems.append({"loc": ["relationships", i, "between", j], "msg": (
                    f"relationship to a character that does not exist: {who!r}")})
        if len(between) == 2 and between[0] == between[1]:
            problems.append({"loc": ["relationships", i, "between"],
                             "msg": "a relationship needs two different characters"})
    return problems


def _turn_problems(data: dict[str, Any]) -> list[Problem]:
    turns = data.get("turns")
    dur, per = data.get("duration_minutes"), data.get("minutes_per_turn")
    if turns is None and (dur is None or per is None):
        return [{"loc": ["turns"],
                 "msg": "give `turns`, or `duration_minutes` with `minutes_per_turn`"}]
    if turns is not None:
        if isinstance(turns, bool) or not isinstance(turns, int) or not 1 <= turns <= MAX_TURNS:
            return [{"loc": ["turns"], "msg": f"turns out of range: {turns!r} (1–{MAX_TURNS})"}]
        return []
    if isinstance(dur, int) and isinstance(per, int) and per > 0 and not (
            1 <= dur // per <= MAX_TURNS):
        return [{"loc": ["duration_minutes"],
                 "msg": f"turns out of range: {dur // per} (1–{MAX_TURNS}) from the duration"}]
    return []


def _dedupe(problems: list[Problem]) -> list[Problem]:
    """Drop pydantic's generic message where a cross-check said the same thing better."""
    ours = {tuple(p["loc"]) for p in problems if not _is_generic(p)}
    seen: set[tuple[Any, ...]] = set()
    out = []
    for p in problems:
        key = (tuple(p["loc"]), p["msg"])
        if key in seen or (_is_generic(p) and tuple(p["loc"]) in ours):
            continue
        seen.add(key)
        out.append(p)
    return out


def _is_generic(p: Problem) -> bool:
    return bool(re.match(r"^(Input should|Value error|Field required)", p["msg"]))


def apply_overrides(
    data: dict[str, Any], overrides: dict[str, Any]
) -> tuple[dict[str, Any], list[Problem]]:
    """The scenario with a run's overrides laid over it.

    Top-level keys replace the scenario's; `characters` may be a mapping of name → fields to
    change in that character (a list replaces the whole cast).
    """
    merged = copy.deepcopy(data)
    problems: list[Problem] = []
    for key, value in (overrides or {}).items():
        if key == "characters" and isinstance(value, dict):
            problems += _override_characters(merged, value)
        elif key in ("narrator", "analyst") and isinstance(value, dict):
            merged[key] = {**(merged.get(key) or {}), **value}
        elif key == "name":
            problems.append({"loc": ["overrides", "name"], "msg": "the name cannot be overridden"})
        else:
            merged[key] = copy.deepcopy(value)
    return merged, problems


def _override_characters(merged: dict[str, Any], changes: dict[str, Any]) -> list[Problem]:
    by_name = {c.get("name"): c for c in merged.get("characters", []) if isinstance(c, dict)}
    problems = []
    for name, fields in changes.items():
        if name not in by_name:
            problems.append({"loc": ["overrides", "characters", name],
                             "msg": f"override for a character that does not exist: {name!r}"})
        elif not isinstance(fields, dict):
            problems.append({"loc": ["overrides", "characters", name], "msg": "must be a mapping"})
        else:
            by_name[name].update(copy.deepcopy(fields))
    return problems
