"""Templates stored in the database beside the shipped files (scenarios and agents)."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel
from sqlalchemy import UniqueConstraint
from sqlmodel import Field, SQLModel

from app.models.base import json_column, utcnow


class TemplateRecord(SQLModel, table=True):
    """One stored template: its type, its name and its body (the parsed YAML)."""

    __tablename__ = "template_record"
    __table_args__ = (UniqueConstraint("type", "name", name="uq_template_record_type_name"),)

    id: int | None = Field(default=None, primary_key=True)
    type: str = Field(max_length=16, index=True)
    name: str = Field(max_length=100)
    body: dict[str, Any] = Field(default_factory=dict, sa_column=json_column())
    owner_id: int | None = Field(default=None, foreign_key="user.id", index=True)
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)


class TemplatePublic(BaseModel):
    type: str
    name: str
    source: str  # "shipped" or "stored"
    body: dict[str, Any]
    owner_id: int | None = None
    created_at: datetime | None = None
    updated_at: datetime | None = None


class TemplatesPublic(BaseModel):
    data: list[TemplatePublic]
    count: int
    json_schema: dict[str, Any] | None = None
