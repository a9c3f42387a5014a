"""The model provider's state as /health reports it: configured or not, and what the LLM
clients last saw of it (persisted by workers, one row per base URL, written only on a change)."""

from __future__ import annotations

from typing import Any

from sqlmodel import col
from sqlmodel.ext.asyncio.session import AsyncSession

from app.core.config import Settings
from app.core.db import connection_scope, upsert_insert
from app.core.redact import redact
from app.models import ProviderState, table
from app.run.llm import KEY_VARIABLES, seen

DEFAULT_BASE_URL = Settings.model_fields["llm_base_url"].default


async def save_seen(settings: Settings) -> None:
    """Persist this process's record of the configured provider if it changed since last time."""
    record = seen(settings.llm_base_url)
    if not record.unsaved:
        return
    record.unsaved = False
    row = {"base_url": settings.llm_base_url, "last_error": _clean(record.last_error),
           "last_error_at": record.last_error_at, "last_ok_at": record.last_ok_at}
    async with connection_scope() as conn:
        stmt = upsert_insert(conn.dialect.name)(table(ProviderState)).values(**row)
        await conn.execute(stmt.on_conflict_do_update(
            index_elements=[col(ProviderState.base_url)],
            set_={k: v for k, v in row.items() if k != "base_url" and v is not None},
        ))


async def provider_health(session: AsyncSession, settings: Settings) -> dict[str, Any]:
    """/health's `llm` section; never the key itself."""
    configured = bool(settings.llm_api_key) or settings.llm_base_url != DEFAULT_BASE_URL
    state = await session.get(ProviderState, settings.llm_base_url)
    out: dict[str, Any] = {
        "configured": configured,
        "base_url": settings.llm_base_url,
        "api_key_set": bool(settings.llm_api_key),
        "last_error": state.last_error if state else None,
        "last_error_at": state.last_error_at if state else None,
        "last_ok_at": state.last_ok_at if state else None,
    }
    if not configured:
        out["hint"] = (f"no model provider configured: set {KEY_VARIABLES}, and "
                       "TASKBENCH_LLM_BASE_URL for a provider other than OpenRouter")
    return out


def _clean(error: str | None) -> str | None:
    return redact(error)[:1000] if error else None
