"""Playbook definitions: the YAML shape, loading it, and checking it before anything runs.

    Playbook            name, description, inputs, steps, summary (a template)
    ├── InputSpec       type (string|integer|number|boolean|list), default, required, enum
    └── Step            id; `tool` + `args`, `prompt` (+ `system`) or `inspect`; when, for_each,
                        retries, retry_delay_s, on_error (fail|continue), parse (text|json),
                        ok_if, check

A playbook is checked when it is loaded: every tool exists in the registry and gets only the
arguments its schema names; every template compiles in the sandbox and names only declared
inputs and earlier steps (see playbook_templates). Problems name the step and the field.
"""

from __future__ import annotations

import copy
import re
from functools import lru_cache
from pathlib import Path
from typing import Any, Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, model_validator

from app.core.config import TEMPLATES_DIR
from app.tools.registry import REGISTRY, Tool

PLAYBOOKS_DIR = TEMPLATES_DIR / "playbooks"
Problem = dict[str, Any]
NAME_RE = re.compile(r"^[a-z0-9][a-z0-9_-]{0,99}$")
IDENT = r"^[a-z_][a-z0-9_]{0,63}$"
_PY_TYPES: dict[str, Any] = {
    "string": str,
    "integer": int,
    "number": (int, float),
    "boolean": bool,
    "list": list,
    "array": list,
    "object": dict,
}


class PlaybookNotFound(LookupError):
    """No playbook of that name in templates/playbooks/."""


class PlaybookInvalid(ValueError):
    """The playbook file itself is wrong; `problems` name the step and field."""

    def __init__(self, problems: list[Problem]) -> None:
        super().__init__("; ".join(f"{'.'.join(map(str, p['loc']))}: {p['msg']}" for p in problems))
        self.problems = problems


class InputSpec(BaseModel):
    """One declared input: its type, whether it is required, and its default."""

    model_config = ConfigDict(extra="forbid")

    type: Literal["string", "integer", "number", "boolean", "list"] = "string"
    description: str = ""
    default: Any = None
    required: bool | None = Field(None, description="default: required unless a default is set")
    enum: list[Any] | None = None
    pattern: str | None = Field(
        None, description="regular expression a string (or every item of a list) must match"
    )
    max_length: int = Field(20_000, ge=1, description="longest string or list accepted")

    @property
    def is_required(self) -> bool:
        return self.required if self.required is not None else self.default is None


class Step(BaseModel):
    """One step: a tool call or an LLM prompt, both with Jinja-templated fields."""

    model_config = ConfigDict(extra="forbid")

    id: str = Field(pattern=IDENT)
    description: str = ""
    tool: str | None = None
    args: dict[str, Any] = Field(default_factory=dict)
    prompt: str | None = None
    system: str | None = None
    inspect: bool = Field(False, description="run the agent's inspector on the work so far;"
                          " ok when it passes (its failure fails the run unless on_error:"
                          " continue, which completes it with warnings)")
    when: str | None = Field(None, description="Jinja expression; the step is skipped if false")
    for_each: str | None = Field(None, description="Jinja expression giving a list")
    retries: int = Field(0, ge=0, le=10, description="extra attempts when a result is not ok")
    retry_delay_s: float = Field(0.0, ge=0, le=300)
    on_error: Literal["fail", "continue"] = "fail"
    parse: Literal["text", "json"] = "text"
    ok_if: str | None = Field(
        None,
        description="expression over `result` (output, data): an attempt counts as ok"
        " only when it is true, e.g. result.data.exit_code == 0",
    )
    check: bool = Field(False, description="a verification step: runs in the test phase")

    @model_validator(mode="after")
    def _one_action(self) -> Step:
        if (self.tool is not None) + (self.prompt is not None) + self.inspect != 1:
            raise ValueError("a step needs exactly one of `tool`, `prompt` or `inspect: true`")
        if self.inspect and (self.args or self.system or self.for_each):
            raise ValueError("an `inspect` step takes no `args`, `system` or `for_each`")
        if self.prompt is not None and self.args:
            raise ValueError("`args` belongs to tool steps; a prompt step has `prompt`")
        if self.tool is not None and self.system is not None:
            raise ValueError("`system` belongs to prompt steps")
        return self

    @property
    def action(self) -> dict[str, str]:
        if self.inspect:
            return {"inspect": self.id}
        return {"tool": self.tool} if self.tool else {"prompt": self.id}


class Playbook(BaseModel):
    """A named, parameterised sequence of steps."""

    model_config = ConfigDict(extra="forbid")

    name: str = Field(pattern=NAME_RE.pattern)
    description: str = ""
    inputs: dict[str, InputSpec] = Field(default_factory=dict)
    steps: list[Step] = Field(min_length=1)
    summary: str | None = Field(None, description="template of the run's summary")


# -- the check -------------------------------------------------------------------------------
def check_playbook(playbook: Playbook) -> list[Problem]:
    """Every problem with a well-formed playbook: tools, arguments, templates, defaults."""
    import app.tools  # noqa: F401  (importing the package registers every tool family)

    # Jinja's sandbox (~7 MB) loads with the first playbook checked, not with every process
    # that imports the kinds (an idle API does)
    from app.kinds.playbook.templates import RESERVED, template_problem

    problems: list[Problem] = []
    for name, spec in playbook.inputs.items():
        loc: list[Any] = ["playbook", "inputs", name]
        if not re.match(IDENT, name) or name in RESERVED:
            problems.append(
                {
                    "loc": loc,
                    "msg": "an input name is lower_snake_case and not "
                    f"one of {', '.join(sorted(RESERVED))}",
                }
            )
        if spec.pattern is not None and _bad_regex(spec.pattern):
            problems.append({"loc": [*loc, "pattern"], "msg": _bad_regex(spec.pattern)})
        elif spec.default is not None and (msg := input_problem(spec, spec.default)):
            problems.append({"loc": [*loc, "default"], "msg": msg})
    earlier: set[str] = set()
    for step in playbook.steps:
        loc = ["playbook", "steps", step.id]
        if step.id in earlier or step.id in RESERVED:
            problems.append({"loc": [*loc, "id"], "msg": "duplicate or reserved step id"})
        problems += _step_problems(step, loc, set(playbook.inputs), earlier)
        earlier.add(step.id)
    if playbook.summary is not None:
        msg = template_problem(
            playbook.summary, inputs=set(playbook.inputs), steps=earlier, loop=False
        )
        if msg:
            problems.append({"loc": ["playbook", "summary"], "msg": msg})
    return problems


def _bad_regex(pattern: str) -> str | None:
    try:
        re.compile(pattern)
    except re.error as exc:
        return f"not a regular expression: {exc}"
    return None


def _step_problems(
    step: Step, loc: list[Any], inputs: set[str], earlier: set[str]
) -> list[Problem]:
    from app.kinds.playbook.templates import as_template, template_problem, template_strings

    problems = _tool_problems(step, loc) if step.tool is not None else []
    fields: list[tuple[tuple[str, ...], str]] = [
        (("when",), as_template(step.when or "true")),
        (("for_each",), as_template(step.for_each or "[]")),
        (("ok_if",), as_template(step.ok_if or "true")),
        (("prompt",), step.prompt or ""),
        (("system",), step.system or ""),
        *((("args", *path), text) for path, text in template_strings(step.args)),
    ]
    for field, source in fields:
        in_loop = step.for_each is not None and field[0] not in ("when", "for_each")
        msg = template_problem(
            source, inputs=inputs, steps=earlier, loop=in_loop, result=field[0] == "ok_if"
        )
        if msg:
            problems.append({"loc": [*loc, *field], "msg": msg})
    return problems


def _tool_problems(step: Step, loc: list[Any]) -> list[Problem]:
    """The step's tool exists and its arguments fit the tool's schema (literals by type too)."""
    tool: Tool | None = REGISTRY.get(step.tool or "")
    if tool is None:
        known = ", ".join(sorted(REGISTRY))
        return [{"loc": [*loc, "tool"], "msg": f"unknown tool {step.tool!r} (known: {known})"}]
    props: dict[str, Any] = tool.parameters.get("properties", {})
    problems = [
        {
            "loc": [*loc, "args", key],
            "msg": f"{tool.name} takes no argument {key!r}"
            f" (it takes: {', '.join(props) or 'none'})",
        }
        for key in step.args
        if key not in props
    ]
    problems += [
        {"loc": [*loc, "args", key], "msg": f"missing required argument of {tool.name}"}
        for key in tool.parameters.get("required", [])
        if key not in step.args
    ]
    for key, value in step.args.items():
        expected = props.get(key, {}).get("type")
        templated = isinstance(value, str) and ("{{" in value or "{%" in value)
        if (
            isinstance(expected, str)
            and expected in _PY_TYPES
            and not templated
            and not (
                isinstance(value, _PY_TYPES[expected])
                and not (expected in ("integer", "number") and isinstance(value, bool))
            )
        ):
            problems.append({"loc": [*loc, "args", key], "msg": f"must be of type {expected}"})
    return problems


# -- loading ---------------------------------------------------------------------------------
def playbook_names() -> list[str]:
    """Names of the playbooks shipped in templates/playbooks/."""
    return sorted(p.stem for p in Path(PLAYBOOKS_DIR).glob("*.yaml") if NAME_RE.match(p.stem))


def load_playbook(name: str) -> Playbook:
    """Read, parse and check templates/playbooks/<name>.yaml; PlaybookInvalid says what is wrong."""
    if not isinstance(name, str) or not NAME_RE.match(name):
        raise PlaybookNotFound(name)
    path = Path(PLAYBOOKS_DIR) / f"{name}.yaml"
    if not path.is_file():
        raise PlaybookNotFound(name)
    return _load_cached(path, path.stat().st_mtime_ns)


@lru_cache(maxsize=64)
def _load_cached(path: Path, _mtime_ns: int) -> Playbook:
    try:
        data = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise PlaybookInvalid([{"loc": ["playbook"], "msg": f"not valid YAML: {exc}"}]) from exc
    playbook = parse_playbook(data)
    if playbook.name != path.stem:
        raise PlaybookInvalid(
            [
                {
                    "loc": ["playbook", "name"],
                    "msg": f"name {playbook.name!r} differs from file {path.name}",
                }
            ]
        )
    return playbook


def parse_playbook(data: Any) -> Playbook:
    """A Playbook from its YAML data, checked against the tool registry and its own steps."""
    if not isinstance(data, dict):
        raise PlaybookInvalid([{"loc": ["playbook"], "msg": "a playbook is a YAML mapping"}])
    try:
        playbook = Playbook.model_validate(data)
    except ValidationError as exc:
        raise PlaybookInvalid([_problem_from(err, data) for err in exc.errors()]) from exc
    problems = check_playbook(playbook)
    if problems:
        raise PlaybookInvalid(problems)
    return playbook


def _problem_from(err: Any, data: dict[str, Any]) -> Problem:
    """A pydantic error with the step's index replaced by its id, when it has one."""
    loc: list[Any] = ["playbook", *err["loc"]]
    if len(loc) > 2 and loc[1] == "steps" and isinstance(loc[2], int):
        raw = data.get("steps") or []
        step = raw[loc[2]] if loc[2] < len(raw) else None
        if isinstance(step, dict) and isinstance(step.get("id"), str):
            loc[2] = step["id"]
    return {"loc": loc, "msg": err["msg"]}


# -- inputs ----------------------------------------------------------------------------------
def resolve_inputs(playbook: Playbook, given: Any) -> tuple[dict[str, Any], list[Problem]]:
    """The inputs with defaults applied, and a problem for every missing, unknown or bad one."""
    if not isinstance(given, dict):
        return {}, [{"loc": ["inputs"], "msg": "inputs must be an object"}]
    problems: list[Problem] = [
        {"loc": ["inputs", key], "msg": f"unknown input (known: {', '.join(playbook.inputs)})"}
        for key in given
        if key not in playbook.inputs
    ]
    values: dict[str, Any] = {}
    for key, spec in playbook.inputs.items():
        if key not in given or given[key] is None:
            if spec.is_required:
                problems.append({"loc": ["inputs", key], "msg": f"missing required {spec.type}"})
            else:
                values[key] = copy.deepcopy(spec.default)
            continue
        msg = input_problem(spec, given[key])
        if msg:
            problems.append({"loc": ["inputs", key], "msg": msg})
        else:
            values[key] = given[key]
    return values, problems


def input_problem(spec: InputSpec, value: Any) -> str | None:
    """Why `value` does not fit `spec`, or None."""
    expected = _PY_TYPES[spec.type]
    if not isinstance(value, expected) or (
        spec.type in ("integer", "number") and isinstance(value, bool)
    ):
        return f"must be of type {spec.type}, not {type(value).__name__}"
    if isinstance(value, str | list) and len(value) > spec.max_length:
        return f"longer than {spec.max_length}"
    if spec.pattern is not None:
        texts = value if isinstance(value, list) else [value]
        if not all(isinstance(t, str) and re.fullmatch(spec.pattern, t) for t in texts):
            return f"must match {spec.pattern}" + (" (every item)" if texts is value else "")
    if spec.enum is not None and value not in spec.enum:
        return f"must be one of {spec.enum}"
    return None
