"""Agents: who can take which tasks (by complexity), with which model and tools."""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from pydantic import model_validator
from sqlmodel import Field, SQLModel

from app.models.base import json_column, utcnow


class AgentStatus(StrEnum):
    available = "available"
    busy = "busy"
    offline = "offline"
    disabled = "disabled"


class AgentBase(SQLModel):
    name: str = Field(
        index=True, unique=True, min_length=1, max_length=64, regex=r"^[a-z0-9][a-z0-9_-]*$"
    )
    description: str = Field(default="", max_length=2000)
    model: str = Field(min_length=1, max_length=200)
    fallback_models: list[str] = Field(default_factory=list, sa_column=json_column())
    escalation_models: list[str] = Field(default_factory=list, sa_column=json_column())
    min_complexity: int = Field(ge=1, le=10)
    max_complexity: int = Field(ge=1, le=10)
    max_concurrent: int = Field(default=1, ge=1, le=100)
    allowed_tools: list[str] = Field(default_factory=list, sa_column=json_column())
    allowed_commands: list[str] | None = Field(default=None, sa_column=json_column())
    config: dict[str, Any] = Field(default_factory=dict, sa_column=json_column())


class Agent(AgentBase, table=True):
    id: int | None = Field(default=None, primary_key=True)
    status: str = Field(default=AgentStatus.available.value, max_length=16)
    active_tasks: int = 0
    tasks_done: int = 0
    reviews_passed: int = 0
    reviews_failed: int = 0
    last_active: datetime | None = None
    created_at: datetime = Field(default_factory=utcnow)


class AgentCreate(AgentBase):
    status: AgentStatus = AgentStatus.available

    @model_validator(mode="after")
    def _range(self) -> AgentCreate:
        if self.min_complexity > self.max_complexity:
            raise ValueError("min_complexity must not exceed max_complexity")
        return self


class AgentUpdate(SQLModel):
    description: str | None = Field(default=None, max_length=2000)
    model: str | None = Field(default=None, min_length=1, max_length=200)
    fallback_models: list[str] | None = None
    escalation_models: list[str] | None = None
    min_complexity: int | None = Field(default=None, ge=1, le=10)
    max_complexity: int | None = Field(default=None, ge=1, le=10)
    max_concurrent: int | None = Field(default=None, ge=1, le=100)
    allowed_tools: list[str] | None = None
    allowed_commands: list[str] | None = None
    config: dict[str, Any] | None = None
    status: AgentStatus | None = None


class AgentPublic(AgentBase):
    id: int
    status: AgentStatus
    active_tasks: int
    tasks_done: int
    reviews_passed: int
    reviews_failed: int
    quality: float = 0.5
    last_active: datetime | None
    created_at: datetime


class AgentsPublic(SQLModel):
    data: list[AgentPublic]
    count: int
