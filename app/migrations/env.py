"""Alembic environment: runs migrations with the app's own async engine (SQLite or PostgreSQL)."""

from __future__ import annotations

import asyncio
from logging.config import fileConfig
from typing import Any

import sqlalchemy as sa
from alembic import context
from alembic.runtime.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy.engine import Connection
from sqlmodel import SQLModel

import app.models  # noqa: F401  (registers every table on SQLModel.metadata)
from app.core.config import get_settings
from app.core.db import make_engine

config = context.config
if config.config_file_name is not None and config.attributes.get("configure_logger", True):
    fileConfig(config.config_file_name, disable_existing_loggers=False)

target_metadata = SQLModel.metadata


def _url() -> str:
    return config.attributes.get("url") or get_settings().db_url


def _drop_superseded_heads(connection: Connection) -> None:
    """Forget a recorded revision that is an ancestor of another recorded one.

    0002_outbox and 0004_templates were both heads until 0004 was put after 0002; databases
    migrated then record both, and Alembic refuses such overlapping heads.
    """
    current = set(MigrationContext.configure(connection).get_current_heads())
    script = ScriptDirectory.from_config(config)
    stale = {
        rev
        for rev in current
        for other in current - {rev}
        if rev in {s.revision for s in script.iterate_revisions(other, "base")}
    }
    if stale:
        table = sa.table("alembic_version", sa.column("version_num"))
        connection.execute(sa.delete(table).where(table.c.version_num.in_(sorted(stale))))


def _configure(connection: Connection) -> None:
    _drop_superseded_heads(connection)
    context.configure(
        connection=connection,
        target_metadata=target_metadata,
        render_as_batch=connection.dialect.name == "sqlite",
        compare_type=True,
    )
    with context.begin_transaction():
        context.run_migrations()


async def _run_async() -> None:
    engine = make_engine(_url(), pooled=False)
    async with engine.connect() as connection:
        await connection.run_sync(_configure)
        await connection.commit()
    await engine.dispose()


def run_migrations_offline() -> None:
    context.configure(url=_url(), target_metadata=target_metadata, literal_binds=True)
    with context.begin_transaction():
        context.run_migrations()


def run_migrations_online() -> None:
    connection: Any = config.attributes.get("connection")
    if connection is not None:
        _configure(connection)
    else:
        asyncio.run(_run_async())


if context.is_offline_mode():
    run_migrations_offline()
else:
    run_migrations_online()
