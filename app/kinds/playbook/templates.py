"""Playbook templates: the one sandbox they run in, their static check, and their rendering.

A template may name only `inputs.<declared input>`, `steps.<earlier step id>.<field>`, `tools`
(the tool names this run may use) and, inside a `for_each` step, `item` and `index`. A string
that is exactly one `{{ expression }}` keeps the expression's native type (a list, a number);
anything else renders to text. Values are rendered once and never re-rendered, so a hostile
input or tool output is data, never a template; the sandbox refuses attribute access to
internals (`__class__`, methods that mutate). Besides Jinja's own filters there is `urls`.
"""

from __future__ import annotations

import re
from functools import lru_cache
from typing import Any

from jinja2 import StrictUndefined, TemplateError, TemplateSyntaxError, Undefined, meta, nodes
from jinja2.sandbox import ImmutableSandboxedEnvironment

STEP_FIELDS = frozenset({"output", "data", "ok", "status", "json", "each"})
# `x.name` finds a dict's method before its key, so these may not name inputs or steps.
RESERVED = frozenset(n for n in dir(dict) if not n.startswith("_"))
LOOP_VARS = frozenset({"item", "index"})
_URL_LINE = re.compile(r"^\s*(https?://\S+)\s*$", re.MULTILINE)
_SINGLE_EXPR = re.compile(r"^\s*\{\{(?P<expr>.*?)\}\}\s*$", re.DOTALL)


class RenderError(Exception):
    """A template failed at run time (undefined name, refused attribute, bad value)."""


@lru_cache
def template_env() -> ImmutableSandboxedEnvironment:
    """The sandbox every playbook template is parsed and rendered in."""
    env = ImmutableSandboxedEnvironment(
        undefined=StrictUndefined, autoescape=False, keep_trailing_newline=True
    )
    env.filters["urls"] = line_urls
    return env


def line_urls(text: Any) -> list[str]:
    """The `urls` filter: http(s) URLs standing alone on a line (as web_search lists them)."""
    found = _URL_LINE.findall(str(text))
    return list(dict.fromkeys(found))


def single_expression(text: str) -> str | None:
    """The expression of a string that is exactly one `{{ … }}`, else None."""
    match = _SINGLE_EXPR.match(text)
    if not match or "{{" in match.group("expr") or "}}" in match.group("expr"):
        return None
    return match.group("expr")


def as_template(expression: str) -> str:
    """`when` and `for_each` may be written bare or as `{{ … }}`; this is the `{{ … }}` form."""
    return expression if single_expression(expression) is not None else f"{{{{ {expression} }}}}"


# -- the static check ------------------------------------------------------------------------
def template_problem(
    source: str, *, inputs: set[str], steps: set[str], loop: bool, result: bool = False
) -> str | None:
    """Why `source` is not a valid template in this place, or None when it is."""
    env = template_env()
    try:
        ast = env.parse(source)
        env.compile(source)  # unknown filters and tests fail only when compiled
    except TemplateSyntaxError as exc:
        return f"bad template expression: {exc.message} (line {exc.lineno})"
    allowed = {"inputs", "steps", "tools"} | (LOOP_VARS if loop else set())
    allowed |= {"result"} if result else set()
    unknown = sorted(meta.find_undeclared_variables(ast) - allowed)
    if unknown:
        names = ", ".join(sorted(allowed))
        return f"unknown name(s) {', '.join(unknown)}; a template may use {names}"
    for root, key, field in _references(ast):
        if root == "inputs" and key not in inputs:
            return f"unknown input {key!r}"
        if root == "steps" and key not in steps:
            return f"step {key!r} is not an earlier step"
        if root == "steps" and field is not None and field not in STEP_FIELDS:
            return f"steps.{key} has no field {field!r} (fields: {', '.join(sorted(STEP_FIELDS))})"
    return None


def _references(ast: nodes.Template) -> list[tuple[str, str, str | None]]:
    """(root, key, field) for each `inputs.key` and `steps.key.field` (or `[...]`) used."""
    lookups: list[nodes.Getattr | nodes.Getitem] = list(
        ast.find_all((nodes.Getattr, nodes.Getitem))  # type: ignore[arg-type]
    )
    parent_of = {id(node.node): node for node in lookups}
    found: list[tuple[str, str, str | None]] = []
    for node in lookups:
        base = node.node
        if not (isinstance(base, nodes.Name) and base.name in ("inputs", "steps")):
            continue
        key = _key_of(node)
        if key is None:
            continue
        parent = parent_of.get(id(node))
        found.append((base.name, key, _key_of(parent) if parent is not None else None))
    return found


def _key_of(node: nodes.Node) -> str | None:
    if isinstance(node, nodes.Getattr):
        return node.attr
    if isinstance(node, nodes.Getitem) and isinstance(node.arg, nodes.Const):
        return str(node.arg.value)
    return None


def template_strings(value: Any, path: tuple[str, ...] = ()) -> list[tuple[tuple[str, ...], str]]:
    """Every string inside a YAML value, with its path of keys (list items by index)."""
    if isinstance(value, str):
        return [(path, value)]
    if isinstance(value, dict):
        return [hit for k, v in value.items() for hit in template_strings(v, (*path, str(k)))]
    if isinstance(value, list):
        return [hit for i, v in enumerate(value) for hit in template_strings(v, (*path, str(i)))]
    return []


# -- rendering -------------------------------------------------------------------------------
def render_value(value: Any, context: dict[str, Any]) -> Any:
    """`value` with every string in it rendered; a lone `{{ expr }}` keeps its native type."""
    if isinstance(value, str):
        return render_string(value, context)
    if isinstance(value, dict):
        return {k: render_value(v, context) for k, v in value.items()}
    if isinstance(value, list):
        return [render_value(v, context) for v in value]
    return value


def render_string(text: str, context: dict[str, Any]) -> Any:
    """One templated string: a native value for a lone expression, else text."""
    expression = single_expression(text)
    try:
        if expression is not None:
            result = template_env().compile_expression(expression, undefined_to_none=False)(
                **context
            )
            if isinstance(result, Undefined):
                result._fail_with_undefined_error()
            return result
        return template_env().from_string(text).render(**context)
    except TemplateError as exc:
        raise RenderError(exc.message or type(exc).__name__) from exc
    except (TypeError, ValueError, ArithmeticError, LookupError) as exc:
        raise RenderError(f"{type(exc).__name__}: {exc}") from exc


def evaluate(expression: str, context: dict[str, Any]) -> Any:
    """The native value of a `when` or `for_each` expression."""
    return render_string(as_template(expression), context)
