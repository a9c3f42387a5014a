"""Casting stored characters into a scenario definition (POST /scenarios/runs).

`cast: [{character: "Ann"}, …]` in a definition names the user's stored characters; each
becomes an inline character (persona, traits, goals as stored) and the run remembers which
stored character it is (`stored_cast`: name → id), so the run reads and writes their memories.
With an ecosystem, its current relationships between cast members are the starting ties.
"""

from __future__ import annotations

from typing import Any

from fastapi import HTTPException, status
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from app.models import Character, Ecosystem, User


def _problem(loc: list[Any], msg: str) -> HTTPException:
    return HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT,
                         [{"loc": ["body", *loc], "msg": msg, "type": "value_error"}])


async def resolve(session: AsyncSession, user: User, definition: dict[str, Any],
                  ecosystem_id: int | None) -> tuple[dict[str, Any], dict[str, int]]:
    """(the definition with its cast made inline, stored character name → id)."""
    data = dict(definition)
    entries = data.pop("cast", None) or []
    if not isinstance(entries, list) or len(entries) > 50:
        raise _problem(["definition", "cast"], "a list of {character: name}, at most 50")
    inline = list(data.get("characters") or [])
    stored: dict[str, int] = {}
    for index, entry in enumerate(entries):
        name = entry.get("character") if isinstance(entry, dict) else None
        if not isinstance(name, str) or not name:
            raise _problem(["definition", "cast", index], "give {character: <name>}")
        found = (await session.exec(select(Character).where(
            Character.owner_id == user.id, Character.name == name))).first()
        if found is None or found.id is None:
            raise _problem(["definition", "cast", index, "character"],
                           f"you have no character named {name!r}")
        extra = {k: v for k, v in entry.items() if k in ("role", "emotional_state", "model")}
        inline.append({"name": found.name, "persona": found.persona,
                       "traits": dict(found.traits or {}), "goals": list(found.goals or []),
                       **extra})
        stored[found.name] = found.id
    data["characters"] = inline
    if ecosystem_id is not None:
        eco = await session.get(Ecosystem, ecosystem_id)
        if eco is None or eco.owner_id != user.id:
            raise _problem(["ecosystem"], f"no ecosystem {ecosystem_id} of yours")
        names = {c.get("name") for c in inline if isinstance(c, dict)}
        given = {tuple(sorted(r.get("between", []))) for r in data.get("relationships") or []}
        ties = [{"between": [r["a"], r["b"]], "strength": r["strength"], "trust": r["trust"]}
                for r in eco.relationships or []
                if r.get("a") in names and r.get("b") in names
                and tuple(sorted([r["a"], r["b"]])) not in given]
        data["relationships"] = [*(data.get("relationships") or []), *ties]
    return data, stored
