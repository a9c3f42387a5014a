"""The append-only event log: everything a task does, numbered per task."""

from __future__ import annotations

from datetime import datetime
from typing import Any

from pydantic import BaseModel
from sqlalchemy import UniqueConstraint
from sqlmodel import Field, SQLModel

from app.models.base import json_column, utcnow


class TaskEvent(SQLModel, table=True):
    __tablename__ = "task_event"
    __table_args__ = (UniqueConstraint("task_id", "seq", name="uq_task_event_seq"),)

    id: int | None = Field(default=None, primary_key=True)
    task_id: int = Field(foreign_key="task.id", index=True)
    seq: int
    type: str = Field(max_length=64)
    data: dict[str, Any] = Field(default_factory=dict, sa_column=json_column())
    created_at: datetime = Field(default_factory=utcnow)


class EventPublic(BaseModel):
    task_id: int
    seq: int
    type: str
    data: dict[str, Any]
    created_at: datetime


class EventsPublic(BaseModel):
    data: list[EventPublic]
    count: int
    last_seq: int
