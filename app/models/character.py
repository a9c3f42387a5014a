"""Persistent characters, the ecosystems they live in, and what each remembers.

    Character   a person of a scenario that outlives one run: persona, Big Five traits, goals
    Ecosystem   a named set of characters with their current relationships (strength, trust),
                and its living mode (rounds run by the sweep under a daily budget)
    Memory      one thing a character remembers: an observation of an interaction or a
                reflection on a run, with its importance (0–1), its source run and, when an
                embedding model is installed, its embedding (for relevance)
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel, ConfigDict, field_validator
from pydantic import Field as PField
from sqlalchemy import UniqueConstraint
from sqlmodel import Field, SQLModel, col

from app.models.base import json_column, utcnow

BIG_FIVE = ("openness", "conscientiousness", "extraversion", "agreeableness", "neuroticism")
NAME_PATTERN = r"^[A-Za-z][A-Za-z0-9 .'_-]{0,63}$"


class Character(SQLModel, table=True):
    __table_args__ = (UniqueConstraint("owner_id", "name", name="uq_character_owner_name"),)

    id: int | None = Field(default=None, primary_key=True)
    owner_id: int = Field(foreign_key="user.id", index=True)
    name: str = Field(max_length=64)
    persona: str = ""
    traits: dict[str, float] = Field(default_factory=dict, sa_column=json_column())
    goals: list[str] = Field(default_factory=list, sa_column=json_column())
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)


class Ecosystem(SQLModel, table=True):
    __table_args__ = (UniqueConstraint("owner_id", "name", name="uq_ecosystem_owner_name"),)

    id: int | None = Field(default=None, primary_key=True)
    owner_id: int = Field(foreign_key="user.id", index=True)
    name: str = Field(max_length=64)
    character_ids: list[int] = Field(default_factory=list, sa_column=json_column())
    # [{a, b, strength, trust, interactions}] between member names, as a run leaves them
    relationships: list[dict[str, Any]] = Field(default_factory=list, sa_column=json_column())
    # living mode (app.kinds.scenario.living): off | on | paused; the sweep starts a round when
    # it is on, no round is in flight and next_at has come; the rest (definition, interval,
    # daily budget, what today spent) is the `living` document
    living_status: str = Field(default="off", max_length=8, index=True)
    living_next_at: datetime | None = None
    living_task_id: int | None = None
    living: dict[str, Any] = Field(default_factory=dict, sa_column=json_column())
    # every living write is `… WHERE living_version = <what it read>` and bumps it: the API
    # and the sweeps of every process never overwrite each other's changes
    living_version: int = 0
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)


def living_due(now: Any) -> Any:
    """The living ecosystems the sweep has work for at `now` (a value or a bind parameter): a
    round in flight to settle, or living mode on and the next round due."""
    return (col(Ecosystem.living_status) != "off") & (
        col(Ecosystem.living_task_id).is_not(None)
        | ((col(Ecosystem.living_status) == "on") & (col(Ecosystem.living_next_at) <= now)))


class Memory(SQLModel, table=True):
    id: int | None = Field(default=None, primary_key=True)
    character_id: int = Field(foreign_key="character.id", index=True)
    task_id: int | None = Field(default=None, foreign_key="task.id", index=True)
    kind: str = Field(default="observation", max_length=16)  # observation | reflection
    content: str = Field(max_length=2000)
    importance: float = 0.5
    embedding: list[float] | None = Field(default=None, sa_column=json_column())
    created_at: datetime = Field(default_factory=utcnow, index=True)


class Traits(BaseModel):
    """The Big Five, each 0–1 (missing ones are 0.5, a middling trait)."""

    model_config = ConfigDict(extra="forbid")

    openness: float = PField(0.5, ge=0, le=1)
    conscientiousness: float = PField(0.5, ge=0, le=1)
    extraversion: float = PField(0.5, ge=0, le=1)
    agreeableness: float = PField(0.5, ge=0, le=1)
    neuroticism: float = PField(0.5, ge=0, le=1)


class CharacterCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = PField(pattern=NAME_PATTERN)
    persona: str = PField(default="", max_length=4000)
    traits: Traits = PField(default_factory=Traits)
    goals: list[str] = PField(default_factory=list, max_length=20)

    @field_validator("goals")
    @classmethod
    def _goals(cls, v: list[str]) -> list[str]:
        goals = [" ".join(g.split()) for g in v]
        if any(not g or len(g) > 300 for g in goals):
            raise ValueError("each goal is 1 to 300 characters")
        return goals


class CharacterPublic(BaseModel):
    id: int
    name: str
    persona: str
    traits: dict[str, float]
    goals: list[str]
    created_at: datetime


class CharactersPublic(BaseModel):
    data: list[CharacterPublic]
    count: int


class MemoryCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    content: str = PField(min_length=1, max_length=2000)
    importance: float = PField(0.5, ge=0, le=1)
    kind: str = PField(default="observation", pattern="^(observation|reflection)$")


class MemoryPublic(BaseModel):
    id: int
    kind: str
    content: str
    importance: float
    created_at: datetime
    source_run: int | None = PField(default=None, description="the run (task) it came from")
    score: float | None = PField(default=None, description="retrieval score, when ranked")


class MemoriesPublic(BaseModel):
    data: list[MemoryPublic]
    count: int
    relevance: str = PField(description="how relevance was judged: embeddings or shared words")


class EcosystemCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = PField(pattern=NAME_PATTERN)
    characters: list[int] = PField(default_factory=list, max_length=100)


class EcosystemPublic(BaseModel):
    id: int
    name: str
    characters: list[CharacterPublic]
    relationships: list[dict[str, Any]]
    created_at: datetime


class EcosystemsPublic(BaseModel):
    data: list[EcosystemPublic]
    count: int
