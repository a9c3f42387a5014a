"""The email outbox: one row per message, written in the transaction that ends a task.

A row's life (see app/integrations/outbox.py for the guarantee each step buys):

    pending ──claim──► claimed ──commit point──► sending ──► sent
       ▲                  │                         │
       └──retry/backoff───┘                         └── stale lease ──► unconfirmed
    (attempts exhausted or permanent SMTP reject) ──► failed
"""

from __future__ import annotations

from datetime import datetime
from enum import StrEnum
from typing import Any

from sqlmodel import Field, SQLModel

from app.models.base import json_column, utcnow


class OutboxStatus(StrEnum):
    pending = "pending"
    claimed = "claimed"
    sending = "sending"
    sent = "sent"
    failed = "failed"
    unconfirmed = "unconfirmed"


class OutboxMessage(SQLModel, table=True):
    """An email to one recipient; `message_id` is its idempotency key."""

    __tablename__ = "outbox_message"

    id: int | None = Field(default=None, primary_key=True)
    task_id: int = Field(foreign_key="task.id", index=True)
    kind: str = Field(max_length=16, description="task_end (notification) or agent (send_email)")
    recipient: str = Field(max_length=320)
    message_id: str = Field(max_length=255, unique=True)
    payload: dict[str, Any] = Field(default_factory=dict, sa_column=json_column())
    status: str = Field(default=OutboxStatus.pending, max_length=16, index=True)
    attempts: int = 0
    next_attempt_at: datetime = Field(default_factory=utcnow, index=True)
    lease_until: datetime | None = None
    claimed_by: str | None = Field(default=None, max_length=100)
    last_error: str | None = Field(default=None, max_length=2000)
    created_at: datetime = Field(default_factory=utcnow)
    updated_at: datetime = Field(default_factory=utcnow)
    sent_at: datetime | None = None
