"""What a task kind is (agent, playbook, scenario): validation, Task.spec fields, templates.

Importing this package registers every kind (explicitly: a broken kind fails here, loudly).
"""

from app.kinds import agent, playbook, scenario
from app.kinds.registry import KindSpec, TemplateSpec, UnknownKind, get, names, templates

__all__ = ["KindSpec", "TemplateSpec", "UnknownKind", "agent", "get", "names", "playbook",
           "scenario", "templates"]
