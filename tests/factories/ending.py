"""A task's end raced by another: the slot it holds before, and the checks that it ended once
(one status event, the slot given back once, the agent counted once and only for a completion)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from app.core.db import session_scope
from app.models import Agent, Task


@dataclass
class Held:
    """A task holding one of its agent's slots, and the agent's counts then."""

    task_id: int
    agent_id: int
    active: int
    done: int


async def holding_slot(task_id: int) -> Held:
    async with session_scope() as session:
        task = await session.get(Task, task_id)
        assert task is not None and task.slot_held and task.agent_id is not None
        agent = await session.get(Agent, task.agent_id)
        assert agent is not None
        return Held(task_id, task.agent_id, agent.active_tasks, agent.tasks_done)


async def assert_ended_once(client: Any, held: Held) -> None:
    async with session_scope() as session:
        task = await session.get(Task, held.task_id)
        agent = await session.get(Agent, held.agent_id)
    assert task is not None and agent is not None and task.slot_held is False
    assert agent.active_tasks == held.active - 1
    assert agent.tasks_done == held.done + (task.status == "completed")
    events = (await client.get(f"/tasks/{held.task_id}/events")).json()["data"]
    ends = [e for e in events if e["type"] == "status"
            and e["data"]["status"] in ("completed", "cancelled")]
    assert len(ends) == 1 and ends[0]["data"]["slot_released"] is True
