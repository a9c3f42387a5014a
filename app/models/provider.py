"""What the LLM clients last saw of each model provider, for /health (written by workers)."""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Field, SQLModel


class ProviderState(SQLModel, table=True):
    __tablename__ = "provider_state"

    base_url: str = Field(primary_key=True, max_length=500)
    last_error: str | None = Field(default=None, max_length=1000)
    last_error_at: datetime | None = None
    last_ok_at: datetime | None = None
