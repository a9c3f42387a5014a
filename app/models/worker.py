"""Worker processes as the database sees them: registered on start, heartbeating."""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Field, SQLModel

from app.models.base import json_column, utcnow


class WorkerNode(SQLModel, table=True):
    __tablename__ = "worker_node"

    id: str = Field(primary_key=True, max_length=200)
    hostname: str = Field(max_length=200)
    pid: int
    agents: list[str] = Field(default_factory=list, sa_column=json_column())
    sandbox: str = Field(default="", max_length=200)
    tasks_in_flight: int = 0
    started_at: datetime = Field(default_factory=utcnow)
    heartbeat_at: datetime = Field(default_factory=utcnow, index=True)
