"""The one tool registry: each tool's name, description, JSON schema and coroutine.

A tool is registered with `@tool(...)`; the schema's properties are checked against the
function's keyword parameters at registration, so a mismatch fails at import, not mid-task.
`dispatch` turns every failure a model can cause into an observation string.
"""

from __future__ import annotations

import inspect
import json
import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import Any

from app.core.config import Settings
from app.sandbox.workspace import PathRefused, Workspace
from app.tools.errors import ToolControl, ToolError, ToolRefused
from app.tools.ports import Ports

Emit = Callable[[str, dict[str, Any]], Awaitable[None]]
MAX_OBSERVATION_CHARS = 20_000


@dataclass
class ToolResult:
    """What a tool returns: text for the model plus figures for the event log."""

    output: str
    data: dict[str, Any] = field(default_factory=dict)


@dataclass
class ToolContext:
    """Everything a tool may touch for one task. Secrets are not in here on purpose."""

    task_id: int
    workspace: Workspace
    settings: Settings
    emit: Emit
    agent_name: str = ""
    allowed_commands: list[str] | None = None
    agent_config: dict[str, Any] = field(default_factory=dict)
    # the task as the run found it (shared by the run's tool calls: not to be changed)
    task: dict[str, Any] = field(default_factory=dict)
    services: Ports = field(default_factory=Ports)


ToolFunc = Callable[..., Awaitable[ToolResult | str]]


@dataclass(frozen=True)
class Tool:
    name: str
    description: str
    parameters: dict[str, Any]
    func: ToolFunc

    def schema(self) -> dict[str, Any]:
        return {
            "type": "function",
            "function": {
                "name": self.name,
                "description": self.description,
                "parameters": self.parameters,
            },
        }


REGISTRY: dict[str, Tool] = {}


def _check_signature(name: str, parameters: dict[str, Any], func: ToolFunc) -> None:
    sig = inspect.signature(func)
    params = list(sig.parameters.values())
    if not params or params[0].name != "ctx":
        raise TypeError(f"tool {name}: first parameter must be ctx")
    accepted = {p.name: p for p in params[1:]}
    props = set(parameters.get("properties", {}))
    if set(accepted) != props:
        raise TypeError(f"tool {name}: schema properties {sorted(props)} != {sorted(accepted)}")
    for req in parameters.get("required", []):
        if accepted[req].default is not inspect.Parameter.empty:
            raise TypeError(f"tool {name}: required parameter {req} has a default")
    for pname, p in accepted.items():
        if pname not in parameters.get("required", []) and p.default is inspect.Parameter.empty:
            raise TypeError(f"tool {name}: optional parameter {pname} needs a default")


def tool(name: str, description: str, parameters: dict[str, Any]) -> Callable[[ToolFunc], ToolFunc]:
    """Register `func` as the tool `name`."""
    parameters = {"type": "object", "additionalProperties": False, **parameters}
    parameters.setdefault("properties", {})

    def register(func: ToolFunc) -> ToolFunc:
        if name in REGISTRY:
            raise ValueError(f"tool {name} registered twice")
        _check_signature(name, parameters, func)
        REGISTRY[name] = Tool(name, description, parameters, func)
        _offered.clear()
        return func

    return register


def schemas(allowed: list[str] | None) -> list[dict[str, Any]]:
    """OpenAI tool schemas for the allowed tools (all when `allowed` is empty or None).

    The same list for the same tools, every phase and every run (shared: callers that add
    tools make a list of their own), so what is worked out from it once is reused: its JSON
    (`schemas_json`), which goes into every model request."""
    key = tuple(allowed) if allowed else ()
    offered = _offered.get(key)
    if offered is None:
        names = [n for n in REGISTRY if not allowed or n in allowed or n == "finish"]
        offered = _offered[key] = [REGISTRY[n].schema() for n in names]
    return offered


_offered: dict[tuple[str, ...], list[dict[str, Any]]] = {}
_serialised: dict[int, tuple[list[dict[str, Any]], str]] = {}
SERIALISED_KEPT = 16  # tool lists whose JSON is kept (an agent's own, with its MCP tools…)


def schemas_json(tools: list[dict[str, Any]]) -> str:
    """The JSON of a list of tool schemas, serialised once per list: the ~9 KB of schemas were
    serialised twice for every model call (the request, the prompt's size estimate)."""
    kept = _serialised.get(id(tools))
    if kept is not None and kept[0] is tools:
        return kept[1]
    if len(_serialised) >= SERIALISED_KEPT:
        _serialised.pop(next(iter(_serialised)))
    text = json.dumps(tools, default=str)
    _serialised[id(tools)] = (tools, text)  # the list is kept too: its id is not reused
    return text


def _validate_args(t: Tool, args: dict[str, Any]) -> None:
    props = t.parameters.get("properties", {})
    unknown = sorted(set(args) - set(props))
    if unknown:
        raise ToolError(f"unknown argument(s) for {t.name}: {', '.join(unknown)}")
    missing = [r for r in t.parameters.get("required", []) if r not in args]
    if missing:
        raise ToolError(f"missing required argument(s) for {t.name}: {', '.join(missing)}")
    kinds = {"string": str, "integer": int, "number": (int, float), "boolean": bool,
             "array": list, "object": dict}
    for key, value in args.items():
        expected = props[key].get("type")
        if isinstance(expected, str) and expected in kinds:
            ok = isinstance(value, kinds[expected])  # type: ignore[arg-type]
            if expected in ("integer", "number") and isinstance(value, bool):
                ok = False
            if not ok and not (value is None and key not in t.parameters.get("required", [])):
                raise ToolError(f"argument {key} of {t.name} must be of type {expected}")


def truncate(text: str, limit: int = MAX_OBSERVATION_CHARS) -> str:
    """Keep the head and the tail of a long text and mark the cut."""
    if len(text) <= limit:
        return text
    half = limit // 2
    cut = len(text) - 2 * half
    return f"{text[:half]}\n…[{cut} characters cut]…\n{text[-half:]}"


@dataclass
class Dispatched:
    """One tool call's outcome, as the loop records it."""

    name: str
    ok: bool
    output: str
    data: dict[str, Any]
    duration_ms: float
    refused: bool = False


async def dispatch(
    ctx: ToolContext, name: str, raw_args: str | dict[str, Any], allowed: list[str] | None
) -> Dispatched:
    """Run one tool call. Model mistakes come back as observations; ToolControl propagates."""
    start = time.perf_counter()

    def done(ok: bool, output: str, data: dict[str, Any] | None = None, refused: bool = False):
        ms = (time.perf_counter() - start) * 1000
        return Dispatched(name, ok, truncate(output), data or {}, ms, refused)

    t = REGISTRY.get(name)
    if t is None or (allowed and name not in allowed and name != "finish"):
        known = ", ".join(n for n in REGISTRY if not allowed or n in allowed or n == "finish")
        return done(False, f"Error: unknown tool {name!r}. Available tools: {known}")
    try:
        args = json.loads(raw_args or "{}") if isinstance(raw_args, str) else raw_args
        if not isinstance(args, dict):
            raise ToolError("tool arguments must be a JSON object")
        _validate_args(t, args)
        result = await t.func(ctx, **args)
    except ToolControl:
        raise
    except json.JSONDecodeError as exc:
        return done(False, f"Error: arguments are not valid JSON ({exc.msg}); try again")
    except (ToolRefused, PathRefused) as exc:
        return done(False, f"Refused: {exc}", refused=True)
    except ToolError as exc:
        return done(False, f"Error: {exc}. Try again or use another tool.")
    if isinstance(result, str):
        result = ToolResult(result)
    return done(True, result.output, result.data)
