"""KindSpec: what a task kind is, and the registry every layer above looks kinds up in.

A kind registers one KindSpec from its own module (kinds/agent.py, kinds/playbook/,
kinds/scenario/); how it runs is registered separately in app.run.kinds. Nothing else branches
on the kind: submit validates through `get(kind).validate`, api/templates lists `templates()`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from app.models import TaskCreate

Problem = dict[str, Any]  # {"loc": [...], "msg": "..."}, loc relative to the request body


def _no_spec(_task_in: TaskCreate) -> dict[str, Any]:
    return {}


@dataclass(frozen=True)
class TemplateSpec:
    """A type of template under /templates/{type}: shipped files, optionally stored ones too."""

    type: str  # the URL segment: "agents", "playbooks", "scenarios"
    shipped: Callable[[], dict[str, dict[str, Any]]]  # name -> body
    check: Callable[[Any], list[Problem]] | None = None  # None: files only, not storable
    json_schema: Callable[[], dict[str, Any]] | None = None


@dataclass(frozen=True)
class KindSpec:
    name: str  # a TaskKind value
    validate: Callable[[TaskCreate], list[Problem]]  # [] when a submission of it may run
    spec: Callable[[TaskCreate], dict[str, Any]] = _no_spec  # extra fields of Task.spec
    templates: TemplateSpec | None = None


_KINDS: dict[str, KindSpec] = {}


class UnknownKind(LookupError):
    pass


def register(spec: KindSpec) -> KindSpec:
    """Add a kind; registering a name twice is a programming error."""
    if spec.name in _KINDS:
        raise ValueError(f"task kind {spec.name!r} is registered twice")
    _KINDS[spec.name] = spec
    return spec


def get(name: str) -> KindSpec:
    try:
        return _KINDS[name]
    except KeyError:
        raise UnknownKind(f"unknown task kind {name!r}") from None


def names() -> list[str]:
    return sorted(_KINDS)


def templates() -> dict[str, TemplateSpec]:
    """Every template type a kind offers, by its URL segment."""
    return {k.templates.type: k.templates for k in _KINDS.values() if k.templates}
