"""Helpers for the scenario tests: a small scenario, the scripted LLM answering as narrator,
actors and analyst, and a real RunContext for a scenario task (on the conftest's database)."""

from __future__ import annotations

import json
import re
from collections.abc import Callable
from typing import Any

from sqlmodel import select

from app.core.config import get_settings
from app.core.db import session_scope
from app.models import Agent, Task, User
from app.run import llm as llm_module
from app.run.budget import Limits
from app.run.context import RunContext
from app.sandbox.workspace import Workspace
from tests.fakes.llm_server import Response, text

THREE = {
    "name": "three",
    "title": "Three at a table",
    "setting": "A kitchen table late at night.",
    "mood": "tired",
    "objectives": ["Decide who washes up"],
    "turns": 3,
    "characters": [
        {"name": "Ann", "role": "host", "traits": {"openness": 0.7}, "goals": ["rest"]},
        {"name": "Bob", "role": "guest", "traits": {"agreeableness": 0.4}},
        {"name": "Cy", "role": "neighbour", "emotional_state": "curious"},
    ],
    "relationships": [{"between": ["Ann", "Bob"], "strength": 0.2, "trust": 0.6}],
    "narrator": {"enabled": True, "style": "dry"},
    "analyst": {"enabled": True, "every_k_turns": 2, "look_for": ["who gives in"]},
}


def move(target: str | None, content: str = "hello", kind: str = "chat",
         sentiment: float = 0.5, mood: str | None = "fine", action: str = "speak") -> Response:
    return text(json.dumps({"action": action, "target": target, "interaction_type": kind,
                            "content": content, "sentiment": sentiment,
                            "emotional_state": mood}))


def analysis(*, met: bool, summary: str = "Ann and Bob grew closer.") -> Response:
    """The analyst's reply, with its verdict on THREE's objective."""
    return text(json.dumps({"summary": summary,
                            "alliances": ["Ann with Bob: 'hello' (turn 1)"],
                            "objectives": [{"objective": "Decide who washes up",
                                            "met": met, "evidence": "none"}]}))


class CastResponder:
    """Answers by role: the narrator, the analyst, or the actor the system prompt names.

    `plans[name]` is a list of replies used in order (the last one repeats); `turn_of`
    reads the turn from the prompt so a plan can also be a function of the turn.
    """

    def __init__(self) -> None:
        self.plans: dict[str, list[Response] | Callable[[int, dict[str, Any]], Response]] = {}
        self.calls: dict[str, int] = {}
        # (final, request) → reply; None: the default analysis (objective not met)
        self.analyst: Callable[[bool, dict[str, Any]], Response] | None = None

    def __call__(self, request: dict[str, Any]) -> Response:
        system = request["messages"][0]["content"]
        user = request["messages"][1]["content"]
        if system.startswith("You are the narrator"):
            turn = int(re.search(r"Turn (\d+)", user).group(1))  # type: ignore[union-attr]
            return text(json.dumps({"scene": f"Scene of turn {turn}.", "changes": "time passes"}))
        if system.startswith("You are the analyst"):
            if self.analyst is not None:
                return self.analyst("The scene is over" in user, request)
            return analysis(met=False)
        name = re.match(r"You play ([^,\n]+?)(,|\sin )", system).group(1)  # type: ignore[union-attr]
        turn = int(re.search(r"Turn (\d+) of", user).group(1))  # type: ignore[union-attr]
        plan = self.plans.get(name)
        self.calls[name] = self.calls.get(name, 0) + 1
        if callable(plan):
            return plan(turn, request)
        if not plan:
            return move(None, action="silent", content="", mood=None)
        return plan[min(self.calls[name], len(plan)) - 1]


async def close_llm_client() -> None:
    """Close the cached HTTP client inside the test's loop, before the loop goes away."""
    await llm_module.close_clients()
    llm_module.reset_clients()


async def _owner_and_agent() -> Agent:
    async with session_scope() as session:
        agent = (await session.exec(select(Agent).where(Agent.name == "sim"))).first()
        if agent is None:
            session.add(User(email="owner@example.com"))
            agent = Agent(name="sim", model="scripted/model", min_complexity=1,
                          max_complexity=10)
            session.add(agent)
            await session.flush()
        return agent


async def make_run_context(spec: dict[str, Any], *, max_steps: int = 500) -> RunContext:
    """A real RunContext for a new scenario task with `spec` (the database is migrated)."""
    settings = get_settings()
    agent = await _owner_and_agent()
    async with session_scope() as session:
        owner = (await session.exec(select(User))).first()
        assert owner is not None
        task = Task(owner_id=owner.id, kind="scenario", title="scenario run", spec=spec,
                    agent_id=agent.id, status="build")
        session.add(task)
        await session.flush()
    assert task.id is not None
    ws = Workspace.for_task(settings.workspaces_dir, agent.name, task.id)
    ws.create(title=task.title, description="")
    limits = Limits.resolve({"max_steps": max_steps}, settings)
    return RunContext(task=task, agent=agent, workspace=ws, settings=settings, limits=limits,
                      worker_id="test")


async def run_events(task_id: int) -> list[dict[str, Any]]:
    """A scenario run's events as the replay functions read them."""
    from app.core.db import session_scope
    from app.kinds.scenario.replay import load_events

    async with session_scope() as session:
        return await load_events(session, task_id)


HARBOUR = {"name": "harbour", "title": "Harbour night", "setting": "A quiet harbour at dusk.",
           "turns": 2, "analyst": {"enabled": False},
           "cast": [{"character": "Ann", "role": "cook"}, {"character": "Bob"}]}


async def make_ecosystem(client: Any, names: list[str], name: str = "Harbour"
                         ) -> dict[str, Any]:
    """Characters `names` (traits varying by position) in a new ecosystem, through the API."""
    ids = []
    for i, who in enumerate(names):
        made = await client.post("/characters", json={
            "name": who, "persona": f"{who} works at the harbour.",
            "traits": {"openness": round(0.1 + 0.1 * (i % 9), 1), "agreeableness": 0.7},
            "goals": [f"{who}'s goal"]})
        assert made.status_code == 201, made.text
        ids.append(made.json()["id"])
    eco = await client.post("/ecosystems", json={"name": name, "characters": ids})
    assert eco.status_code == 201, eco.text
    return dict(eco.json())


async def start_in_ecosystem(client: Any, eco_id: int, definition: dict[str, Any] | None = None,
                             **body: Any) -> int:
    """Start a cast run (HARBOUR unless given) in the ecosystem; returns its task id."""
    made = await client.post("/scenarios/runs", json={
        "definition": definition or HARBOUR, "ecosystem": eco_id, "seed": 1, **body})
    assert made.status_code == 201, made.text
    return int(made.json()["task_id"])
