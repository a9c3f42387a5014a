"""/health: the database, the broker, the live workers, the sandbox and the model provider."""

from __future__ import annotations

import asyncio
from datetime import timedelta
from typing import Any

from fastapi import APIRouter, Response, status
from sqlalchemy import text
from sqlmodel import col, select

from app.api.deps import SessionDep
from app.core.config import get_settings
from app.integrations.outbox_state import backlog
from app.models import WorkerNode, utcnow
from app.run.provider_state import provider_health
from app.sandbox.selftest import run_selftest
from app.tasks.broker import broker_status

router = APIRouter(tags=["health"])


def _sandbox() -> dict[str, Any]:
    try:
        return run_selftest(get_settings())
    except Exception as exc:  # noqa: BLE001 - /health reports, it never crashes
        return {"mode": "bwrap", "ok": False, "error": str(exc)}


@router.get("/health")
async def health(session: SessionDep, response: Response) -> dict[str, Any]:
    settings = get_settings()
    db_ok = True
    try:
        await session.execute(text("SELECT 1"))
    except Exception:  # noqa: BLE001
        db_ok = False
    broker_ok, broker_detail = await asyncio.to_thread(broker_status)
    alive_after = utcnow() - timedelta(seconds=settings.worker_heartbeat_s * 3)
    workers = (await session.exec(
        select(WorkerNode).where(col(WorkerNode.heartbeat_at) > alive_after)
    )).all() if db_ok else []
    sandbox = await asyncio.to_thread(_sandbox)
    ok = db_ok and broker_ok
    if not ok:
        response.status_code = status.HTTP_503_SERVICE_UNAVAILABLE
    return {
        "status": "ok" if ok else "degraded",
        "database": "ok" if db_ok else "unreachable",
        "broker": broker_detail,
        "broker_kind": "embedded" if settings.is_embedded_broker else "redis",
        "workers": [
            {"id": w.id, "agents": w.agents, "sandbox": w.sandbox,
             "heartbeat_age_s": round((utcnow() - w.heartbeat_at).total_seconds(), 1)}
            for w in workers
        ],
        "sandbox": sandbox,
        "llm": await provider_health(session, settings) if db_ok else None,
        "outbox": await backlog(session) if db_ok else None,
    }
