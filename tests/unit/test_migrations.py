"""The migration history is one line: one Alembic head, and old two-head databases still upgrade."""

from __future__ import annotations

import sqlite3
from pathlib import Path

from alembic.script import ScriptDirectory

from app.ops.migrate import alembic_config, upgrade


def test_history_has_exactly_one_head() -> None:
    script = ScriptDirectory.from_config(alembic_config("sqlite://"))
    heads = script.get_heads()
    assert len(heads) == 1, f"several Alembic heads, put one after the other: {heads}"
    assert {rev.revision for rev in script.walk_revisions()} >= {"0001", "0002_outbox"}


def test_database_recorded_at_both_old_heads_upgrades(tmp_path: Path) -> None:
    db = tmp_path / "old.sqlite"
    upgrade(f"sqlite+aiosqlite:///{db}")
    with sqlite3.connect(db) as conn:  # as left by the time 0002 and 0004 were both heads
        conn.execute("INSERT OR IGNORE INTO alembic_version (version_num) VALUES ('0002_outbox')")

    upgrade(f"sqlite+aiosqlite:///{db}")

    head = ScriptDirectory.from_config(alembic_config("sqlite://")).get_current_head()
    with sqlite3.connect(db) as conn:
        recorded = [row[0] for row in conn.execute("SELECT version_num FROM alembic_version")]
        tables = {row[0] for row in conn.execute("SELECT name FROM sqlite_master")}
    assert recorded == [head]
    assert {"outbox_message", "template_record"} <= tables
