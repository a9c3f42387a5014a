"""Where scenarios come from: shipped YAML files in templates/scenarios/ and stored templates.

A stored template (table `template_record`, type "scenarios") with the name of a shipped file
takes precedence over it, so a team can adjust a shipped scenario without touching the tree.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import yaml
from sqlmodel import select
from sqlmodel.ext.asyncio.session import AsyncSession

from app.core.config import TEMPLATES_DIR
from app.kinds.scenario.schema import NAME_RE, Problem, Scenario, apply_overrides, validate
from app.models.template import TemplateRecord

SCENARIOS_DIR = TEMPLATES_DIR / "scenarios"
TEMPLATE_TYPE = "scenarios"


class ScenarioNotFound(LookupError):
    """No shipped file and no stored template has this name."""


def parse_yaml(text: str) -> tuple[Any, list[Problem]]:
    """YAML text → data, or a problem saying where the YAML is broken."""
    try:
        return yaml.safe_load(text), []
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f" at line {mark.line + 1}, column {mark.column + 1}" if mark else ""
        return None, [{"loc": ["body"], "msg": f"invalid YAML{where}: {exc}"}]


def shipped_files(directory: Path = SCENARIOS_DIR) -> dict[str, Path]:
    """name → file, for every templates/scenarios/*.yaml (the file stem is the name)."""
    return {p.stem: p for p in sorted(directory.glob("*.yaml"))}


def load_shipped(name: str, directory: Path = SCENARIOS_DIR) -> dict[str, Any] | None:
    """The raw data of one shipped scenario, or None when there is no such file."""
    if not re.match(NAME_RE, name):
        return None
    path = shipped_files(directory).get(name)
    if path is None:
        return None
    data = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    if isinstance(data, dict):
        data.setdefault("name", name)
    return data


def load_scenarios(directory: Path = SCENARIOS_DIR) -> list[dict[str, Any]]:
    """Every shipped scenario as {name, source, data, problems} (problems empty when valid)."""
    out = []
    for name in shipped_files(directory):
        data = load_shipped(name, directory)
        _, problems = validate(data)
        out.append({"name": name, "source": "shipped", "data": data, "problems": problems})
    return out


async def stored_scenarios(session: AsyncSession) -> list[TemplateRecord]:
    rows = await session.exec(
        select(TemplateRecord).where(TemplateRecord.type == TEMPLATE_TYPE)
        .order_by(TemplateRecord.name)
    )
    return list(rows.all())


async def resolve(session: AsyncSession | None, name: str) -> dict[str, Any]:
    """The raw data of scenario `name`: a stored template first, then the shipped file."""
    if session is not None:
        row = (await session.exec(
            select(TemplateRecord).where(TemplateRecord.type == TEMPLATE_TYPE,
                                         TemplateRecord.name == name)
        )).first()
        if row is not None:
            return dict(row.body)
    data = load_shipped(name)
    if data is None:
        raise ScenarioNotFound(name)
    return data


def check_request(
    name: str, overrides: dict[str, Any] | None, definition: dict[str, Any] | None = None
) -> tuple[Scenario | None, list[Problem]]:
    """Validate a run request: the scenario exists and stays valid with the overrides applied."""
    if not isinstance(overrides, dict | type(None)):
        return None, [{"loc": ["overrides"], "msg": "overrides must be a mapping"}]
    data = definition if definition is not None else load_shipped(name)
    if data is None:
        return None, [{"loc": ["scenario"], "msg": f"unknown scenario {name!r}"}]
    merged, problems = apply_overrides(data, overrides or {})
    scenario, more = validate(merged)
    problems += [{"loc": ["overrides", *p["loc"]], "msg": p["msg"]} for p in more]
    return (scenario if not problems else None), problems


def validate_scenario_request(
    name: str, overrides: dict[str, Any] | None, *, definition: dict[str, Any] | None = None
) -> list[Problem]:
    """What submit_task calls for a scenario task: [] when the run can start, else problems.

    `definition` is the scenario's data when it was resolved already (a stored template);
    without it the shipped file of that name is used.
    """
    return check_request(name, overrides, definition)[1]
