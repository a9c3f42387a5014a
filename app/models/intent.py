"""The tool-call journal: one row per call with an effect, written before the effect.

A row is `started` (committed before the tool runs), then `done` with the tool's result. It is
`settled` once the checkpoint holding the call's result is written (same transaction). A run
resumed after its worker died finds the unsettled rows of its last reply and reconciles them
instead of running them again (app.run.journal).
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

from sqlmodel import Field, SQLModel

from app.models.base import json_column, utcnow


class ToolIntent(SQLModel, table=True):
    __tablename__ = "tool_intent"

    id: int | None = Field(default=None, primary_key=True)
    task_id: int = Field(foreign_key="task.id", index=True)
    key: str = Field(max_length=120, unique=True)  # the call's idempotency key
    tool: str = Field(max_length=100)
    position: int = 0  # the call's place in its reply
    args: dict[str, Any] = Field(default_factory=dict, sa_column=json_column())
    reply: dict[str, Any] = Field(default_factory=dict, sa_column=json_column())
    before: dict[str, Any] = Field(default_factory=dict, sa_column=json_column())
    status: str = Field(default="started", max_length=16)  # started | done
    result: dict[str, Any] | None = Field(default=None, sa_column=json_column(nullable=True))
    settled: bool = False
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)
