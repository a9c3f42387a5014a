"""Shared column helpers for the tables."""

from __future__ import annotations

from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any, TypeVar

from sqlalchemy import JSON, Column, Table
from sqlalchemy.orm import class_mapper

M = TypeVar("M")

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


def from_row(model: type[M], row: Mapping[Any, Any]) -> M:
    """A table model holding a row as the database returned it, made the way SQLAlchemy's own
    loading makes one: its values put in place as loaded, with no validation (they are the
    database's) and no attribute events. Attributes set on it afterwards are tracked as usual.

    A task's 43 columns through the model's __init__ (one instrumented setattr each) took
    ~300 µs; this ~20 µs, for every run's task and agent."""
    obj: Any = class_mapper(model).class_manager.new_instance()
    obj.__dict__.update(row)
    object.__setattr__(obj, "__pydantic_fields_set__", set(row))
    return obj  # type: ignore[no-any-return]
