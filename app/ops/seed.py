"""Seed the default agents from templates/agents/*.yaml on first start (idempotent).

The files are read by app.kinds.agent.agent_templates (also what /templates/agents lists).
"""

from __future__ import annotations

import logging

from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from app.kinds.agent import agent_templates
from app.models import Agent

log = logging.getLogger(__name__)


async def seed_agents(session: AsyncSession) -> int:
    """Create shipped agents that are missing by name; returns how many were created."""
    existing = set((await session.exec(select(Agent.name))).all())
    created = 0
    for spec in agent_templates():
        if spec.name not in existing:
            session.add(Agent.model_validate(spec.model_dump()))
            created += 1
    await session.flush()
    if created:
        log.info("seeded %d agent(s)", created)
    return created
