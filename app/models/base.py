"""Shared column helpers for the tables."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, Column, Table

EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def utcnow() -> datetime:
    """Aware UTC now (sqlmodel's UTCDateTime columns store and return UTC)."""
    return datetime.now(UTC)


def json_column(**kwargs: Any) -> Any:
    """A fresh JSON column (a Column object cannot be shared between tables)."""
    return Column(JSON, **kwargs)


def table(model: type[Any]) -> Table:
    """A model's Core table, for statements run on a Core connection (no ORM in between)."""
    t: Table = model.__table__
    return t
