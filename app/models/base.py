"""Shared column helpers for the tables."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, Column


def utcnow() -> datetime:
    """Naive UTC now: SQLite and PostgreSQL store the same thing."""
    return datetime.now(UTC).replace(tzinfo=None)


def json_column(**kwargs: Any) -> Any:
    """A fresh JSON column (a Column object cannot be shared between tables)."""
    return Column(JSON, **kwargs)
