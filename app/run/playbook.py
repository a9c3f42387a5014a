"""Playbooks: a task run as a fixed sequence of tool calls and LLM prompts from YAML.

    run_playbook(ctx)   the runner's entry for kind=playbook; the summary
    (what a playbook is, its validation and listing: app.kinds.playbook)

Phases: `design` records the resolved plan, `build` runs the steps, `test` runs the steps
marked `check`. Each step's result is checkpointed as soon as it (or one item of a `for_each`
step) is done, so a redelivered run resumes after the last finished step and never repeats a
side effect.

    playbook.py            this face
    ├── kinds.playbook.schema     the YAML's shape, loading, the check, inputs
    ├── kinds.playbook.templates  the sandbox, the template check, rendering
    └── playbook_run              one run: phases, steps, retries, loops, checkpoints
"""

from __future__ import annotations

from app.kinds.playbook.schema import (
    PlaybookInvalid,
    PlaybookNotFound,
    load_playbook,
    resolve_inputs,
)
from app.run.context import RunContext
from app.run.errors import AgentFailed
from app.run.playbook_run import PlaybookRun
from app.tools.registry import schemas


async def run_playbook(ctx: RunContext) -> str:
    """Run the task's playbook to the end; AgentFailed names the step that could not go on."""
    spec = ctx.task.spec or {}
    name = str(spec.get("playbook") or "")
    try:
        playbook = load_playbook(name)
    except PlaybookNotFound as exc:
        raise AgentFailed(f"unknown playbook {name!r}") from exc
    except PlaybookInvalid as exc:
        raise AgentFailed(f"playbook {name} is invalid: {exc}") from exc
    inputs, problems = resolve_inputs(playbook, spec.get("inputs") or {})
    if problems:
        raise AgentFailed(f"playbook {name}: bad inputs: {problems}")
    allowed = [s["function"]["name"] for s in schemas(ctx.agent.allowed_tools)]
    return await PlaybookRun(ctx, playbook, inputs, allowed).run()
