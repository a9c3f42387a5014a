"""A write session on SQLite holds the write lock for every transaction it begins.

`session_scope()` begins with BEGIN IMMEDIATE. A commit inside the scope (the API's start-up
seeding did one) used to leave the rest of the scope in a deferred transaction: it read, another
process wrote, and its own write then failed at once with "database is locked" (SQLite cannot
upgrade a read snapshot that another writer has moved past; no busy timeout helps)."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from sqlalchemy import text

from app.core.db import make_engine, session_scope


async def test_a_transaction_begun_after_a_commit_in_the_scope_is_immediate(tmp_path: Path):
    # given a database another process writes to as well
    path = tmp_path / "db.sqlite"
    with sqlite3.connect(path) as setup:
        setup.execute("CREATE TABLE t (v INTEGER)")
    engine = make_engine(f"sqlite+aiosqlite:///{path}")
    other = sqlite3.connect(path, timeout=0, isolation_level=None)
    other_wrote = None
    try:
        async with session_scope(engine) as session:
            await session.execute(text("INSERT INTO t VALUES (1)"))
            await session.commit()  # a commit inside the scope, as seeding did
            # when this session reads, another process tries to write, then this session writes
            await session.execute(text("SELECT count(*) FROM t"))
            try:
                other.execute("INSERT INTO t VALUES (99)")
                other_wrote = True
            except sqlite3.OperationalError:
                other_wrote = False  # it waits for us: we hold the write lock
            await session.execute(text("INSERT INTO t VALUES (2)"))
        # then this session's write went through, and the other writer was the one kept out
        with sqlite3.connect(path) as check:
            values = sorted(v for (v,) in check.execute("SELECT v FROM t"))
        assert values == [1, 2]
        assert other_wrote is False
    finally:
        other.close()
        await engine.dispose()
