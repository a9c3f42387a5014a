"""Casting stored characters into a scenario definition (POST /scenarios/runs).

`cast: [{character: "Ann"}, …]` in a definition names the user's stored characters; each
becomes an inline character (persona, traits, goals as stored) and the run remembers which
stored character it is (`stored_cast`: name → id), so the run reads and writes their memories.
With an ecosystem, its current relationships between cast members are the starting ties.

    resolve(…)        the definition with its cast made inline, or a 422 naming every problem
    check(…)          the same without raising: (definition, stored, problems) — what
                      POST /scenarios/runs/validate reports
    definition_loc    where a problem of the resolved definition lies in what was sent (a
                      cast character's problem points at its `cast` entry)
"""

from __future__ import annotations

from typing import Any

from fastapi import HTTPException, status
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from app.models import Character, Ecosystem, User

Problem = dict[str, Any]
MAX_CAST = 50


def _problem(loc: list[Any], msg: str) -> Problem:
    return {"loc": ["body", *loc], "msg": msg, "type": "value_error"}


async def resolve(session: AsyncSession, user: User, definition: dict[str, Any],
                  ecosystem_id: int | None) -> tuple[dict[str, Any], dict[str, int]]:
    """(the definition with its cast made inline, stored character name → id)."""
    data, stored, problems = await check(session, user, definition, ecosystem_id)
    if problems:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, problems)
    return data, stored


async def check(session: AsyncSession, user: User, definition: dict[str, Any],
                ecosystem_id: int | None
                ) -> tuple[dict[str, Any], dict[str, int], list[Problem]]:
    """The definition with its cast made inline, the stored cast, and every casting problem
    (loc as a 422 of POST /scenarios/runs names it)."""
    data = dict(definition)
    entries = data.pop("cast", None) or []
    if not isinstance(entries, list) or len(entries) > MAX_CAST:
        return data, {}, [_problem(["definition", "cast"],
                                   f"a list of {{character: name}}, at most {MAX_CAST}")]
    raw = data.get("characters")
    inline = list(raw) if isinstance(raw, list) else []
    stored: dict[str, int] = {}
    problems: list[Problem] = []
    for index, entry in enumerate(entries):
        name = entry.get("character") if isinstance(entry, dict) else None
        if not isinstance(name, str) or not name:
            problems.append(_problem(["definition", "cast", index], "give {character: <name>}"))
            continue
        found = (await session.exec(select(Character).where(
            Character.owner_id == user.id, Character.name == name))).first()
        if found is None or found.id is None:
            problems.append(_problem(["definition", "cast", index, "character"],
                                     f"you have no character named {name!r}"))
            continue
        extra = {k: v for k, v in entry.items() if k in ("role", "emotional_state", "model")}
        inline.append({"name": found.name, "persona": found.persona,
                       "traits": dict(found.traits or {}), "goals": list(found.goals or []),
                       **extra})
        stored[found.name] = found.id
    if raw is None or isinstance(raw, list):
        data["characters"] = inline  # characters that are not a list are left for validation
    if ecosystem_id is not None:
        eco = await session.get(Ecosystem, ecosystem_id)
        if eco is None or eco.owner_id != user.id:
            problems.append(_problem(["ecosystem"], f"no ecosystem {ecosystem_id} of yours"))
        else:
            data["relationships"] = _with_ties(data, inline, eco)
    return data, stored, problems


def _with_ties(data: dict[str, Any], inline: list[Any], eco: Ecosystem) -> Any:
    """The definition's relationships plus the ecosystem's ties between cast members that the
    definition does not set itself (relationships that are not a list are left for validation
    to name)."""
    given_rels = data.get("relationships")
    if given_rels is not None and not isinstance(given_rels, list):
        return given_rels
    names = {c.get("name") for c in inline if isinstance(c, dict)}
    given = {tuple(sorted(str(x) for x in r.get("between", []))) for r in given_rels or []
             if isinstance(r, dict) and isinstance(r.get("between"), list)}
    ties = [{"between": [r["a"], r["b"]], "strength": r["strength"], "trust": r["trust"]}
            for r in eco.relationships or []
            if r.get("a") in names and r.get("b") in names
            and tuple(sorted([r["a"], r["b"]])) not in given]
    return [*(given_rels or []), *ties]


def definition_loc(definition: dict[str, Any], loc: list[Any]) -> list[Any]:
    """Where a problem at `loc` of the resolved definition lies in the definition as sent:
    characters appended from `cast` point at their cast entry."""
    raw = definition.get("characters")
    inline = len(raw) if isinstance(raw, list) else 0
    cast = definition.get("cast")
    if (len(loc) >= 2 and loc[0] == "characters" and isinstance(loc[1], int)
            and isinstance(cast, list) and loc[1] >= inline):
        index = loc[1] - inline
        return ["cast", index, *(["character"] if loc[2:] == ["name"] else loc[2:])]
    return loc
