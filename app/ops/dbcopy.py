"""`taskbench db copy`: move every table to another database, ids kept, counts verified."""

from __future__ import annotations

import asyncio

from sqlalchemy import func, select, text
from sqlmodel import SQLModel

import app.models  # noqa: F401  (registers every table)
from app.core.db import make_engine
from app.ops.migrate import upgrade

BATCH = 1000


class CopyError(Exception):
    pass


async def copy_database(source_url: str, target_url: str) -> dict[str, int]:
    """Copy all rows from source to a migrated, empty target; returns rows per table."""
    await asyncio.to_thread(upgrade, target_url)  # Alembic runs its own event loop
    src, dst = make_engine(source_url, pooled=False), make_engine(target_url, pooled=False)
    counts: dict[str, int] = {}
    try:
        async with src.connect() as s, dst.begin() as d:
            for table in SQLModel.metadata.sorted_tables:
                existing = (await d.execute(select(func.count()).select_from(table))).scalar_one()
                if existing:
                    raise CopyError(f"target table {table.name} is not empty ({existing} rows)")
                result = await s.stream(select(table))
                n = 0
                async for chunk in result.mappings().partitions(BATCH):
                    await d.execute(table.insert(), [dict(r) for r in chunk])
                    n += len(chunk)
                counts[table.name] = n
            if dst.dialect.name == "postgresql":
                await _reset_sequences(d)
        await _verify(src, dst, counts)
    finally:
        await src.dispose()
        await dst.dispose()
    return counts


async def _reset_sequences(conn) -> None:  # type: ignore[no-untyped-def]
    for table in SQLModel.metadata.sorted_tables:
        pk = list(table.primary_key.columns)
        if len(pk) == 1 and pk[0].autoincrement is not False and str(pk[0].type) == "INTEGER":
            # Table and column names come from our own metadata, never from input.
            sql = (
                f"SELECT setval(pg_get_serial_sequence('\"{table.name}\"', '{pk[0].name}'), "  # noqa: S608
                f"COALESCE((SELECT MAX(\"{pk[0].name}\") FROM \"{table.name}\"), 0) + 1, false)"
            )
            await conn.execute(text(sql))


async def _verify(src, dst, counts: dict[str, int]) -> None:  # type: ignore[no-untyped-def]
    async with src.connect() as s, dst.connect() as d:
        for table in SQLModel.metadata.sorted_tables:
            a = (await s.execute(select(func.count()).select_from(table))).scalar_one()
            b = (await d.execute(select(func.count()).select_from(table))).scalar_one()
            if a != b or b != counts[table.name]:
                raise CopyError(f"{table.name}: source has {a} rows, target {b}")
