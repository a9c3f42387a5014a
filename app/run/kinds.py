"""How each task kind runs: its name → the coroutine that runs a task of it to a summary.

What a kind is (schema, validation, templates) is registered in app.kinds; a new kind is one module
there and one in app/run, each named once below and in app/kinds/__init__.py. The imports are
plain: a kind whose module does not import fails the worker at start, not its first task.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable

from app.run.agent.loop import run_agent
from app.run.context import RunContext
from app.run.playbook import run_playbook
from app.run.scenario.engine import run_scenario

Runner = Callable[[RunContext], Awaitable[str]]

RUNNERS: dict[str, Runner] = {
    "agent": run_agent,
    "playbook": run_playbook,
    "scenario": run_scenario,
}
