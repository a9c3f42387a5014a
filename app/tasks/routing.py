"""Routing by what a task needs: the tools its fields imply, then its complexity.

What a submission's fields imply (computed once at submission, kept in `task.spec`):

    github.repo or github.issue   → open_pull_request   the task asks for a pull request (an issue
                                                        URL names its repository)
    kind=playbook                 → every tool its steps call
    notify.email                  → nothing: the end-of-task email is sent by the service through
                                    the outbox, not by the agent's `send_email`

An agent serves a task when it has every needed tool (an empty allow-list allows all) and its
complexity range covers the task. A task that needs tools may also go to an agent above its
complexity (the least over-qualified first): a simple GitHub task gets a PR-capable agent rather
than one that cannot open its pull request. A task no enabled agent can serve is refused.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

from app.models import Agent

NEEDS_KEY = "required_tools"


def needs_of(*, github: dict[str, Any] | None, playbook_tools: Iterable[str] = (),
             playbook: str | None = None) -> dict[str, str]:
    """{tool: the field that needs it} for a submission."""
    needs: dict[str, str] = {}
    for tool in playbook_tools:
        if tool != "finish":
            needs.setdefault(tool, f"playbook {playbook}")
    github = github or {}
    if github.get("repo") or github.get("issue"):
        needs["open_pull_request"] = "github.repo" if github.get("repo") else "github.issue"
    return needs


def task_needs(spec: dict[str, Any] | None) -> dict[str, str]:
    """The needs stored with a task (none for tasks submitted before they were recorded)."""
    found = (spec or {}).get(NEEDS_KEY) or {}
    return {str(k): str(v) for k, v in found.items()} if isinstance(found, dict) else {}


def has_tools(agent: Agent, needs: Iterable[str]) -> bool:
    allowed = agent.allowed_tools or []
    return not allowed or all(tool in allowed for tool in needs)


def can_serve(agent: Agent, complexity: int, needs: dict[str, str]) -> bool:
    """Whether `agent` may take the task (ignoring its status and free slots)."""
    if not has_tools(agent, needs):
        return False
    if needs:
        return agent.max_complexity >= complexity
    return agent.min_complexity <= complexity <= agent.max_complexity


def overqualification(agent: Agent, complexity: int) -> int:
    """How far above the task the agent's range starts (0 when it covers the task)."""
    return max(0, agent.min_complexity - complexity)


def unserved_reason(agents: list[Agent], complexity: int, needs: dict[str, str]) -> str:
    """Why none of `agents` can serve a task: the tools missing, or the complexity uncovered."""
    ranges = ", ".join(sorted({f"{a.min_complexity}-{a.max_complexity}" for a in agents}))
    if not needs:
        return (f"no enabled agent covers complexity {complexity}; covered ranges: "
                f"{ranges or 'none (no enabled agents)'}")
    wanted = ", ".join(f"{tool} (for {why})" for tool, why in needs.items())
    equipped = [a for a in agents if has_tools(a, needs)]
    if not equipped:
        return f"no enabled agent has the tools this task needs: {wanted}"
    names = ", ".join(f"{a.name} ({a.min_complexity}-{a.max_complexity})" for a in equipped)
    return (f"this task needs {wanted}; the agents that have them ({names}) are all below"
            f" complexity {complexity}")
