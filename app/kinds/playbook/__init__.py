"""The playbook kind: a task run as a fixed sequence of tool calls and LLM prompts from YAML.

    validate_playbook_request(name, inputs)  at submission: [] or problems naming step and field
    list_playbooks()                         what GET /api/v1/templates/playbooks shows
    schema.py                                the YAML's shape, loading, the check, inputs
    templates.py                             the sandbox, the template check, rendering

How a playbook runs: app.run.playbook.
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
from app.kinds.registry import KindSpec, TemplateSpec, register
from app.models import TaskCreate

log = logging.getLogger(__name__)


def playbook_tools(name: str) -> list[str]:
    """The tools the steps of the playbook `name` call (for routing; [] if it cannot load)."""
    try:
        playbook = load_playbook(name)
    except (PlaybookNotFound, PlaybookInvalid):
        return []
    return sorted({step.tool for step in playbook.steps if step.tool})


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


def validate(task_in: TaskCreate) -> list[Problem]:
    if not task_in.playbook:
        return [{"loc": ["playbook"], "msg": "a playbook task needs `playbook` (its name)"}]
    return validate_playbook_request(task_in.playbook, task_in.inputs)


SPEC = register(KindSpec(
    name="playbook", validate=validate,
    templates=TemplateSpec(type="playbooks",
                           shipped=lambda: {p["name"]: p for p in list_playbooks()}),
))
