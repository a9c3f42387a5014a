"""Seed the default agents from templates/agents/*.yaml on first start (idempotent)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import yaml
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from app.core.config import TEMPLATES_DIR
from app.models import Agent, AgentCreate

log = logging.getLogger(__name__)


def agent_templates(directory: Path = TEMPLATES_DIR / "agents") -> list[AgentCreate]:
    """The shipped agent definitions, validated."""
    found = []
    for path in sorted(directory.glob("*.yaml")):
        data: dict[str, Any] = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        found.append(AgentCreate.model_validate(data))
    return found


async def seed_agents(session: AsyncSession) -> int:
    """Create shipped agents that are missing by name; returns how many were created."""
    existing = set((await session.exec(select(Agent.name))).all())
    created = 0
    for spec in agent_templates():
        if spec.name not in existing:
            session.add(Agent.model_validate(spec.model_dump()))
            created += 1
    await session.commit()
    if created:
        log.info("seeded %d agent(s)", created)
    return created
