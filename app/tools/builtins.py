"""The shell builtins run_command understands: they change the task's shell state on the host
(app.sandbox.shell.ShellState) and every later command runs with it.

    cd [DIR]                  the folder later commands start in (inside the workspace)
    pwd                       where that is
    export [NAME=VALUE ...]   variables for later commands (PATH, HOME, LD_*, PYTHON*, GIT_* and
                              the other names the jail's environment policy drops are refused);
                              alone, lists what was exported
    unset NAME ...            forget exported variables
    source DIR/bin/activate   (or `. DIR/bin/activate`) make DIR the active venv: first on PATH,
                              VIRTUAL_ENV set; no other script is sourced
    deactivate                no venv on PATH
"""

from __future__ import annotations

import asyncio
import posixpath
from collections.abc import Awaitable, Callable

from app.sandbox import fs
from app.sandbox.envpolicy import env_name_allowed
from app.sandbox.jail import JAIL_WORKSPACE
from app.sandbox.shell import ShellState
from app.sandbox.workspace import PathRefused
from app.tools.errors import ToolError
from app.tools.registry import ToolContext, ToolResult

MAX_EXPORTED = 64
MAX_VALUE = 4096


def _jail_path(rel: str) -> str:
    return posixpath.normpath(f"{JAIL_WORKSPACE}/{rel}")


def _relative(ctx: ToolContext, state: ShellState, target: str) -> str:
    """`target` (relative to the shell's folder, or under /workspace) as a workspace-relative
    path that exists; PathRefused when it leaves the workspace."""
    if target.startswith("/"):
        if target != JAIL_WORKSPACE and not target.startswith(JAIL_WORKSPACE + "/"):
            raise PathRefused(f"{target} is outside the workspace ({JAIL_WORKSPACE})")
        joined = target[len(JAIL_WORKSPACE):].lstrip("/") or "."
    else:
        joined = posixpath.normpath(posixpath.join(state.cwd, target))
    return ctx.workspace.relative(ctx.workspace.resolve(joined, must_exist=True))


def _ok(text: str, **data: object) -> ToolResult:
    return ToolResult(f"exit code 0\n{text}", {"exit_code": 0, **data})


async def _cd(ctx: ToolContext, state: ShellState, args: list[str]) -> ToolResult:
    if len(args) > 1:
        raise ToolError("cd takes one folder")
    rel = await asyncio.to_thread(_relative, ctx, state, args[0]) if args else "."
    if fs.kind(ctx.workspace.root, rel) != "dir":
        raise ToolError(f"cd: {args[0]} is not a folder")
    state.cwd = rel
    return _ok(f"now in {_jail_path(rel)}", builtin="cd", cwd=_jail_path(rel))


async def _pwd(ctx: ToolContext, state: ShellState, args: list[str]) -> ToolResult:
    return _ok(_jail_path(state.cwd), builtin="pwd", cwd=_jail_path(state.cwd))


async def _export(ctx: ToolContext, state: ShellState, args: list[str]) -> ToolResult:
    if not args:
        listing = "\n".join(f"{k}={v}" for k, v in sorted(state.env.items()))
        return _ok(listing or "(nothing exported)", builtin="export")
    pairs = []
    for arg in args:
        name, sep, value = arg.partition("=")
        if not sep:
            raise ToolError(f"export {arg}: give a value (export {arg}=VALUE)")
        if not env_name_allowed(name):
            raise ToolError(f"export {name}: this variable is set by the sandbox or could make "
                            "programs load someone else's code; it cannot be exported")
        if len(value) > MAX_VALUE:
            raise ToolError(f"export {name}: the value is longer than {MAX_VALUE} characters")
        pairs.append((name, value))
    if len(set(state.env) | {n for n, _ in pairs}) > MAX_EXPORTED:
        raise ToolError(f"at most {MAX_EXPORTED} variables can be exported")
    state.env.update(pairs)
    return _ok("exported " + ", ".join(n for n, _ in pairs), builtin="export",
               names=[n for n, _ in pairs])


async def _unset(ctx: ToolContext, state: ShellState, args: list[str]) -> ToolResult:
    for name in args:
        state.env.pop(name, None)
    return _ok("unset " + ", ".join(args) if args else "nothing to unset", builtin="unset")


async def _source(ctx: ToolContext, state: ShellState, args: list[str]) -> ToolResult:
    script = args[0] if len(args) == 1 else ""
    if posixpath.basename(script) != "activate":
        raise ToolError("source runs shell scripts, which this sandbox does not; only a venv's "
                        "activation is understood (source .venv/bin/activate)")
    rel = await asyncio.to_thread(_relative, ctx, state, script)
    folder = posixpath.dirname(posixpath.dirname(rel))
    if posixpath.basename(posixpath.dirname(rel)) != "bin" or \
            fs.kind(ctx.workspace.root, f"{folder or '.'}/pyvenv.cfg") != "file":
        raise ToolError(f"{script} is not the activate script of a venv (DIR/bin/activate "
                        "next to DIR/pyvenv.cfg)")
    state.venv = folder or "."
    return _ok(f"venv {_jail_path(state.venv)} is active", builtin="source",
               venv=_jail_path(state.venv))


async def _deactivate(ctx: ToolContext, state: ShellState, args: list[str]) -> ToolResult:
    state.venv = None
    return _ok("no venv is active", builtin="deactivate")


BUILTINS: dict[str, Callable[[ToolContext, ShellState, list[str]], Awaitable[ToolResult]]] = {
    "cd": _cd, "pwd": _pwd, "export": _export, "unset": _unset, "source": _source,
    ".": _source, "deactivate": _deactivate,
}


async def run_builtin(ctx: ToolContext, argv: list[str]) -> ToolResult | None:
    """The builtin's result when argv[0] is one (the state changes only if it succeeds), else
    None."""
    handler = BUILTINS.get(argv[0]) if argv else None
    if handler is None:
        return None
    return await handler(ctx, ctx.services.shell.state, argv[1:])
