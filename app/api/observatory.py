"""/ecosystems/{id}/observatory: an ecosystem as the dashboard's observatory draws it.

The social graph of its members, stats, mean trust over time and an activity feed, all read
from the members, the stored ties and the event logs of the ecosystem's latest runs
(app.kinds.scenario.observatory). Another user's ecosystem is a 404, as everywhere.
"""

from __future__ import annotations

from typing import Annotated, Any

from fastapi import APIRouter, Query
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from app.api.characters import owned_ecosystem
from app.api.deps import CurrentUser, SessionDep
from app.kinds.scenario import observatory, replay
from app.models import Character, Ecosystem, Task, TaskKind

router = APIRouter(prefix="/ecosystems", tags=["characters"])
SCANNED = 500  # the owner's latest scenario tasks looked through for the ecosystem's runs


async def ecosystem_runs(session: AsyncSession, eco: Ecosystem, limit: int) -> list[Task]:
    """The ecosystem's latest runs (started with `ecosystem: id`), newest first."""
    rows = (await session.exec(
        select(Task).where(Task.owner_id == eco.owner_id, Task.kind == TaskKind.scenario)
        .order_by(col(Task.id).desc()).limit(SCANNED))).all()
    return [t for t in rows if ((t.spec or {}).get("inputs") or {}).get("ecosystem") == eco.id
            ][:limit]


async def members_of(session: AsyncSession, eco: Ecosystem) -> list[dict[str, Any]]:
    """The ecosystem's characters, in the ecosystem's order."""
    ids = list(eco.character_ids or [])
    rows = (await session.exec(select(Character).where(col(Character.id).in_(ids)))).all() \
        if ids else []
    by_id = {c.id: c for c in rows}
    return [{"id": c.id, "name": c.name, "persona": c.persona, "traits": dict(c.traits or {}),
             "goals": list(c.goals or [])} for c in (by_id.get(i) for i in ids) if c]


@router.get("/{ecosystem_id}/observatory")
async def observe_ecosystem(
    ecosystem_id: int, session: SessionDep, user: CurrentUser,
    runs: Annotated[int, Query(ge=1, le=50, description="how many latest runs to read")] = 20,
) -> dict[str, Any]:
    """The ecosystem's graph (members, ties; a playing run's ties live), stats, mean trust
    after each turn of its runs, and the latest runs and transcript lines."""
    eco = await owned_ecosystem(session, ecosystem_id, user)
    read = []
    for task in await ecosystem_runs(session, eco, runs):
        assert task.id is not None
        summary = {"task_id": task.id, "title": task.title, "status": task.status,
                   "created_at": task.created_at.isoformat()}
        read.append((summary, await replay.load_events(session, task.id,
                                                       observatory.EVENT_TYPES)))
    view = observatory.observe(name=eco.name, members=await members_of(session, eco),
                               ties=list(eco.relationships or []), runs=read)
    return {"id": eco.id, **view}
