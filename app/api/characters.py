"""/characters and /ecosystems: persistent characters, what they remember, where they live.

Each user's characters and ecosystems are their own (another user's are a 404; admins see
all). `GET /characters/{id}/memories?situation=…` ranks memories as a character recalls them
before acting (app.kinds.scenario.memory: recency + importance + relevance).
"""

from __future__ import annotations

import asyncio
from typing import Annotated, Any

from fastapi import APIRouter, HTTPException, Query, status
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select
from sqlmodel.ext.asyncio.session import AsyncSession

from app.api.deps import CurrentUser, SessionDep
from app.core.db import end_read, session_scope
from app.kinds.scenario.memory import embed_many, recall, relevance_kind
from app.models import (
    Character,
    CharacterCreate,
    CharacterPublic,
    CharactersPublic,
    Ecosystem,
    EcosystemCreate,
    EcosystemPublic,
    EcosystemsPublic,
    MemoriesPublic,
    Memory,
    MemoryCreate,
    MemoryPublic,
    User,
)

router = APIRouter(tags=["characters"])


def _public(c: Character) -> CharacterPublic:
    return CharacterPublic.model_validate(c.model_dump())


async def _owned(session: AsyncSession, model: Any, row_id: int, user: User, what: str) -> Any:
    """The user's own row (admins: any row), else a 404 naming what was asked for."""
    found = await session.get(model, row_id) if 0 < row_id < 2**62 else None
    if found is None or (found.owner_id != user.id and not user.is_admin):
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"{what} {row_id} not found")
    return found


async def owned_character(session: AsyncSession, character_id: int, user: User) -> Character:
    return await _owned(session, Character, character_id, user, "character")


async def owned_ecosystem(session: AsyncSession, ecosystem_id: int, user: User) -> Ecosystem:
    return await _owned(session, Ecosystem, ecosystem_id, user, "ecosystem")


@router.post("/characters", status_code=status.HTTP_201_CREATED, response_model=CharacterPublic)
async def create_character(body: CharacterCreate, session: SessionDep,
                           user: CurrentUser) -> CharacterPublic:
    """A character of yours: name (unique among yours), persona, Big Five traits (0–1), goals."""
    assert user.id is not None
    await end_read(session)  # the read that found the user
    character = Character(owner_id=user.id, name=body.name, persona=body.persona,
                          traits=body.traits.model_dump(), goals=body.goals)
    try:
        async with session_scope() as write:
            write.add(character)
    except IntegrityError:
        raise HTTPException(status.HTTP_409_CONFLICT,
                            f"you have a character named {body.name!r}") from None
    return _public(character)


@router.get("/characters", response_model=CharactersPublic)
async def list_characters(session: SessionDep, user: CurrentUser,
                          limit: Annotated[int, Query(ge=1, le=500)] = 100) -> CharactersPublic:
    stmt = select(Character).order_by(col(Character.id)).limit(limit)
    if not user.is_admin:
        stmt = stmt.where(Character.owner_id == user.id)
    rows = (await session.exec(stmt)).all()
    return CharactersPublic(data=[_public(c) for c in rows], count=len(rows))


@router.get("/characters/{character_id}", response_model=CharacterPublic)
async def get_character(character_id: int, session: SessionDep,
                        user: CurrentUser) -> CharacterPublic:
    return _public(await owned_character(session, character_id, user))


@router.post("/characters/{character_id}/memories", status_code=status.HTTP_201_CREATED,
             response_model=MemoryPublic)
async def add_memory(character_id: int, body: MemoryCreate, session: SessionDep,
                     user: CurrentUser) -> MemoryPublic:
    """Give a character a memory (runs write theirs themselves)."""
    await owned_character(session, character_id, user)
    await end_read(session)  # none held while the memory is embedded and written
    (vector,) = await asyncio.to_thread(embed_many, [body.content])
    memory = Memory(character_id=character_id, kind=body.kind, content=body.content,
                    importance=body.importance, embedding=vector)
    async with session_scope() as write:
        write.add(memory)
    return _memory_public(memory)


def _memory_public(m: Memory, score: float | None = None) -> MemoryPublic:
    assert m.id is not None
    return MemoryPublic(id=m.id, kind=m.kind, content=m.content, importance=m.importance,
                        created_at=m.created_at, source_run=m.task_id, score=score)


@router.get("/characters/{character_id}/memories", response_model=MemoriesPublic)
async def list_memories(
    character_id: int, session: SessionDep, user: CurrentUser,
    situation: Annotated[str, Query(max_length=2000, description=(
        "rank by what the character would recall in this situation; empty: newest first"))] = "",
    limit: Annotated[int, Query(ge=1, le=500)] = 50,
) -> MemoriesPublic:
    await owned_character(session, character_id, user)
    rows = list((await session.exec(
        select(Memory).where(Memory.character_id == character_id)
        .order_by(col(Memory.created_at).desc(), col(Memory.id).desc()).limit(2000))).all())
    if not situation:
        data = [_memory_public(m) for m in rows[:limit]]
        return MemoriesPublic(data=data, count=len(data), relevance="none")
    ranked = recall(situation, [(m.content, m.importance, m.created_at, m.embedding)
                                for m in rows], k=limit)
    data = [_memory_public(rows[r.index], r.score) for r in ranked]
    return MemoriesPublic(data=data, count=len(data), relevance=relevance_kind())


async def _ecosystem_public(session: AsyncSession, eco: Ecosystem) -> EcosystemPublic:
    ids = list(eco.character_ids or [])
    members = (await session.exec(select(Character).where(col(Character.id).in_(ids)))).all() \
        if ids else []
    assert eco.id is not None
    return EcosystemPublic(id=eco.id, name=eco.name, created_at=eco.created_at,
                           characters=[_public(c) for c in members],
                           relationships=list(eco.relationships or []))


@router.post("/ecosystems", status_code=status.HTTP_201_CREATED, response_model=EcosystemPublic)
async def create_ecosystem(body: EcosystemCreate, session: SessionDep,
                           user: CurrentUser) -> EcosystemPublic:
    """A named set of your characters (they start with no ties to each other)."""
    assert user.id is not None
    ids = list(dict.fromkeys(body.characters))
    for index, character_id in enumerate(ids):
        try:
            await owned_character(session, character_id, user)
        except HTTPException:
            raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, [{
                "loc": ["body", "characters", index], "type": "value_error",
                "msg": f"no character {character_id} of yours"}]) from None
    eco = Ecosystem(owner_id=user.id, name=body.name, character_ids=ids)
    await end_read(session)
    try:
        async with session_scope() as write:
            write.add(eco)
    except IntegrityError:
        raise HTTPException(status.HTTP_409_CONFLICT,
                            f"you have an ecosystem named {body.name!r}") from None
    return await _ecosystem_public(session, eco)


@router.get("/ecosystems", response_model=EcosystemsPublic)
async def list_ecosystems(session: SessionDep, user: CurrentUser) -> EcosystemsPublic:
    stmt = select(Ecosystem).order_by(col(Ecosystem.id))
    if not user.is_admin:
        stmt = stmt.where(Ecosystem.owner_id == user.id)
    rows = (await session.exec(stmt)).all()
    data = [await _ecosystem_public(session, e) for e in rows]
    return EcosystemsPublic(data=data, count=len(data))


@router.get("/ecosystems/{ecosystem_id}", response_model=EcosystemPublic)
async def get_ecosystem(ecosystem_id: int, session: SessionDep,
                        user: CurrentUser) -> EcosystemPublic:
    return await _ecosystem_public(session, await owned_ecosystem(session, ecosystem_id, user))
