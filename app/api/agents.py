"""/agents: who takes which tasks. Everyone may read; admins create, edit and delete."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, HTTPException, Query, status
from sqlmodel import col, func, select
from sqlmodel.ext.asyncio.session import AsyncSession

from app.api.deps import AdminUser, CurrentUser, SessionDep
from app.core.db import end_read, session_scope
from app.models import (
    RUNNING_VALUES,
    Agent,
    AgentCreate,
    AgentPublic,
    AgentsPublic,
    AgentUpdate,
    Task,
)
from app.tasks.enqueue import assign_and_enqueue
from app.tasks.scheduling import quality
from app.tools.mcp_servers import ConfigError, parse_servers

router = APIRouter(prefix="/agents", tags=["agents"])


def to_public(agent: Agent) -> AgentPublic:
    return AgentPublic.model_validate({**agent.model_dump(), "quality": round(quality(agent), 4)})


async def _get(session: AsyncSession, agent_id: int) -> Agent:
    agent = await session.get(Agent, agent_id) if 0 < agent_id < 2**62 else None
    if agent is None:
        raise HTTPException(status.HTTP_404_NOT_FOUND, f"agent {agent_id} not found")
    return agent


@router.get("", response_model=AgentsPublic)
async def list_agents(
    session: SessionDep, _user: CurrentUser,
    limit: Annotated[int, Query(ge=1, le=500)] = 100,
) -> AgentsPublic:
    rows = (await session.exec(select(Agent).order_by(col(Agent.id)).limit(limit))).all()
    count = (await session.exec(select(func.count()).select_from(Agent))).one()
    return AgentsPublic(data=[to_public(a) for a in rows], count=count)


def check_config(config: dict | None) -> None:
    """Refuse (422, naming the field) an agent config that names MCP servers badly."""
    try:
        parse_servers((config or {}).get("mcp_servers"))
    except ConfigError as exc:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, [{
            "loc": ["body", "config", *exc.loc], "type": "value_error", "msg": str(exc)}]) from exc


@router.post("", status_code=status.HTTP_201_CREATED, response_model=AgentPublic)
async def create_agent(body: AgentCreate, session: SessionDep, _admin: AdminUser) -> AgentPublic:
    check_config(body.config)
    if (await session.exec(select(Agent).where(Agent.name == body.name))).first():
        raise HTTPException(status.HTTP_409_CONFLICT, f"an agent named {body.name!r} exists")
    agent = Agent.model_validate(body.model_dump())
    await end_read(session)
    async with session_scope() as write:
        write.add(agent)
    await assign_and_enqueue()
    return to_public(agent)


@router.get("/{agent_id}", response_model=AgentPublic)
async def get_agent(agent_id: int, session: SessionDep, _user: CurrentUser) -> AgentPublic:
    return to_public(await _get(session, agent_id))


@router.patch("/{agent_id}", response_model=AgentPublic)
async def update_agent(
    agent_id: int, body: AgentUpdate, session: SessionDep, _admin: AdminUser
) -> AgentPublic:
    """Edit an agent; re-enabling it (or widening it) assigns waiting tasks at once."""
    if body.config is not None:
        check_config(body.config)
    await end_read(session)  # the read that found the admin
    async with session_scope() as write:
        agent = await _get(write, agent_id)
        _apply(agent, body)
        write.add(agent)
    await assign_and_enqueue()
    return to_public(agent)


def _apply(agent: Agent, body: AgentUpdate) -> None:
    changes = body.model_dump(exclude_unset=True)
    if changes.get("status") is None:
        changes.pop("status", None)
    lo = changes.get("min_complexity", agent.min_complexity)
    hi = changes.get("max_complexity", agent.max_complexity)
    if lo is not None and hi is not None and lo > hi:
        raise HTTPException(status.HTTP_422_UNPROCESSABLE_CONTENT, [{
            "loc": ["body", "min_complexity"], "type": "value_error",
            "msg": "min_complexity must not exceed max_complexity"}])
    for key, value in changes.items():
        if value is not None or key == "allowed_commands":
            setattr(agent, key, value)


@router.delete("/{agent_id}", status_code=status.HTTP_204_NO_CONTENT)
async def delete_agent(agent_id: int, session: SessionDep, _admin: AdminUser) -> None:
    """Delete an agent with no unfinished tasks (disable it otherwise)."""
    await end_read(session)  # the read that found the admin
    async with session_scope() as write:
        await _delete(write, agent_id)


async def _delete(session: AsyncSession, agent_id: int) -> None:
    agent = await _get(session, agent_id)
    busy = (await session.exec(select(func.count()).select_from(Task).where(
        Task.agent_id == agent_id, col(Task.status).in_(RUNNING_VALUES)))).one()
    if busy:
        raise HTTPException(status.HTTP_409_CONFLICT,
                            f"agent {agent.name} has {busy} unfinished task(s); disable it instead")
    used = (await session.exec(select(func.count()).select_from(Task).where(
        Task.agent_id == agent_id))).one()
    if used:
        agent.status = "disabled"  # type: ignore[assignment]
        agent.name = f"{agent.name}-deleted-{agent_id}"[:64]
        session.add(agent)
    else:
        await session.delete(agent)
