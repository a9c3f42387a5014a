"""The agent kind: a task an LLM agent plans and works through with tools.

Its templates are the agent definitions in templates/agents/*.yaml (seeded on first start).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError

from app.core.config import TEMPLATES_DIR
from app.kinds.registry import KindSpec, Problem, TemplateSpec, register
from app.models import AgentCreate, TaskCreate


def agent_templates(directory: Path = TEMPLATES_DIR / "agents") -> list[AgentCreate]:
    """The shipped agent definitions, validated."""
    found = []
    for path in sorted(directory.glob("*.yaml")):
        data: dict[str, Any] = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
        found.append(AgentCreate.model_validate(data))
    return found


def validate(task_in: TaskCreate) -> list[Problem]:
    if not (task_in.title or task_in.description):
        return [{"loc": ["title"], "msg": "a task needs a title or a description"}]
    return []


def check_template(data: Any) -> list[Problem]:
    """Problems with an agent template body (the rules of the shipped files)."""
    try:
        AgentCreate.model_validate(data)
    except ValidationError as exc:
        return [{"loc": list(e["loc"]), "msg": e["msg"]} for e in exc.errors(include_url=False)]
    return []


SPEC = register(KindSpec(
    name="agent", validate=validate,
    templates=TemplateSpec(
        type="agents",
        shipped=lambda: {a.name: a.model_dump(mode="json") for a in agent_templates()},
        check=check_template, json_schema=AgentCreate.model_json_schema),
))
