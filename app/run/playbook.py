"""Playbooks: a task run as a fixed sequence of tool calls and LLM prompts from YAML.

    validate_playbook_request(name, inputs)  at submission: [] or problems naming step and field
    list_playbooks()                         what GET /api/v1/templates/playbooks shows
    run_playbook(ctx)                        the runner's entry for kind=playbook; the summary

Phases: `design` records the resolved plan, `build` runs the steps, `test` runs the steps
marked `check`. Each step's result is checkpointed as soon as it (or one item of a `for_each`
step) is done, so a redelivered run resumes after the last finished step and never repeats a
side effect.

    playbook.py            this face
    ├── playbook_schema    the YAML's shape, loading, the check, inputs
    ├── playbook_templates the sandbox, the template check, rendering
    └── playbook_run       one run: phases, steps, retries, loops, checkpoints
"""

from __future__ import annotations

import logging
from typing import Any

from app.kinds.playbook.schema import (
    Playbook,
    PlaybookInvalid,
    PlaybookNotFound,
    Problem,
    load_playbook,
    playbook_names,
    resolve_inputs,
)
from app.run.context import RunContext
from app.run.errors import AgentFailed
from app.run.playbook_run import PlaybookRun
from app.tools.registry import schemas

log = logging.getLogger(__name__)


# -- the public face -------------------------------------------------------------------------
def validate_playbook_request(name: str, inputs: dict[str, Any]) -> list[Problem]:
    """Problems with a `kind: playbook` submission (empty when it may run)."""
    try:
        playbook = load_playbook(name)
    except PlaybookNotFound:
        known = ", ".join(playbook_names())
        return [{"loc": ["playbook"], "msg": f"unknown playbook {name!r} (known: {known})"}]
    except PlaybookInvalid as exc:
        return exc.problems
    return resolve_inputs(playbook, inputs)[1]


def list_playbooks() -> list[dict[str, Any]]:
    """Every valid shipped playbook with its input schema; broken files are logged and left out."""
    listed = []
    for name in playbook_names():
        try:
            playbook = load_playbook(name)
        except (PlaybookInvalid, PlaybookNotFound) as exc:
            log.warning("playbook %s is not listed: %s", name, exc)
            continue
        listed.append(
            {
                "name": playbook.name,
                "description": playbook.description,
                "inputs": input_schema(playbook),
                "steps": [
                    {"id": s.id, **s.action, "description": s.description, "check": s.check}
                    for s in playbook.steps
                ],
            }
        )
    return listed


def input_schema(playbook: Playbook) -> dict[str, Any]:
    """The playbook's inputs as a JSON schema object."""
    properties: dict[str, Any] = {}
    for key, spec in playbook.inputs.items():
        prop: dict[str, Any] = {"type": "array" if spec.type == "list" else spec.type}
        size = "maxItems" if spec.type == "list" else "maxLength"
        extra = {
            "description": spec.description or None,
            "default": spec.default,
            "enum": spec.enum,
            size: spec.max_length if spec.type in ("list", "string") else None,
        }
        prop.update({k: v for k, v in extra.items() if v is not None})
        if spec.pattern is not None:
            pattern = {"pattern": f"^(?:{spec.pattern})$"}
            is_list = spec.type == "list"
            prop.update({"items": {"type": "string", **pattern}} if is_list else pattern)
        properties[key] = prop
    required = [k for k, spec in playbook.inputs.items() if spec.is_required]
    return {
        "type": "object",
        "properties": properties,
        "required": required,
        "additionalProperties": False,
    }


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
