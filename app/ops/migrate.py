"""Apply Alembic migrations programmatically (the CLI, `taskbench up` and the tests use this).

The Alembic configuration is built here, not read from an alembic.ini, so an installed wheel
migrates from any folder; the scripts ship inside the package (app/migrations).
"""

from __future__ import annotations

from pathlib import Path

from alembic import command
from alembic.config import Config

from app.core.config import MIGRATIONS_DIR, get_settings


def alembic_config(url: str | None = None) -> Config:
    """The Alembic configuration for the database at `url` (default: the configured one)."""
    cfg = Config()
    cfg.set_main_option("script_location", str(MIGRATIONS_DIR))
    cfg.set_main_option("path_separator", "os")
    cfg.attributes["url"] = url or get_settings().db_url
    cfg.attributes["configure_logger"] = False
    return cfg


def upgrade(url: str | None = None) -> None:
    """Bring the database at `url` (default: the configured one) to every head."""
    url = url or get_settings().db_url
    if url.startswith("sqlite"):
        path = url.split(":///", 1)[-1]
        if path and path != ":memory:":
            Path(path).parent.mkdir(parents=True, exist_ok=True)
    command.upgrade(alembic_config(url), "heads")
