"""run_command: one program from the agent's allow-list, parsed with shlex, run in the jail.

The jail (app.sandbox.jail) is the security boundary; the allow-list and the argument rules
below are a usability layer that refuses early, with a reason, what is plainly an attempt to
run something else through an allowed program (find -exec, git -c, make SHELL=…).
"""

from __future__ import annotations

import dataclasses
import shlex
from collections.abc import Callable
from typing import Any

from app.sandbox.jail import run_jailed
from app.sandbox.limits import Limits, WorkspaceTooBig
from app.sandbox.workspace import PathRefused
from app.tools.errors import ToolError, ToolRefused
from app.tools.registry import ToolContext, ToolResult, tool

DEFAULT_ALLOWED = (
    "python", "python3", "pytest", "ls", "cat", "head", "tail", "grep", "find", "wc", "sort",
    "diff", "git", "make", "echo", "true", "mkdir", "cp", "mv", "touch",
)
DEFAULT_TIMEOUT_S = 120
MAX_TIMEOUT_S = 600
SHELL_TOKENS = {"|", "||", "&&", ";", "&", ">", ">>", "<", "<<", "2>", "2>&1", "&>", "$(", "`"}

FIND_ACTIONS = {"-exec", "-execdir", "-ok", "-okdir", "-delete", "-fprint", "-fprint0",
                "-fprintf", "-fls"}
GIT_FORBIDDEN_OPTS = ("--upload-pack", "--receive-pack", "--exec-path", "--config-env",
                      "--exec", "--extcmd", "--tool", "--run")
GIT_FORBIDDEN_SUBCOMMANDS = {"filter-branch", "daemon", "difftool", "mergetool", "upload-pack",
                             "receive-pack", "shell", "credential", "instaweb", "web--browse",
                             "remote-ext", "submodule", "bisect", "send-email", "imap-send"}
GIT_CONFIG_PREFIXES = ("core.", "alias.", "filter.", "diff.", "merge.", "credential.",
                       "include.", "includeif.", "remote.", "url.", "protocol.", "uploadpack.",
                       "receivepack.", "sequence.", "gpg.", "ssh.", "http.", "interactive.")


def _find_rule(args: list[str], ctx: ToolContext) -> str | None:
    bad = sorted(FIND_ACTIONS & set(args))
    return f"find {bad[0]} runs or deletes; use find to list, then act on files" if bad else None


def _git_rule(args: list[str], ctx: ToolContext) -> str | None:
    sub_index = next((i for i, a in enumerate(args) if not a.startswith("-")), len(args))
    for arg in args[:sub_index]:
        if arg == "-c" or (arg.startswith("-c") and len(arg) > 2):
            return "git -c is not allowed (configuration can run programs)"
    for arg in args:
        if arg.startswith(GIT_FORBIDDEN_OPTS) or (arg == "-u" and sub_index < len(args)
                                                  and args[sub_index] in ("fetch", "clone",
                                                                          "pull", "ls-remote")):
            return f"git option {arg.split('=')[0]} is not allowed (it names a program to run)"
    sub = args[sub_index] if sub_index < len(args) else ""
    if sub in GIT_FORBIDDEN_SUBCOMMANDS:
        return f"git {sub} is not allowed"
    if sub == "rebase" and any(a in ("-x", "--exec") or a.startswith("-x") for a in args):
        return "git rebase --exec is not allowed"
    if sub == "config":
        rest = args[sub_index + 1:]
        if any(a in ("--global", "--system", "--file", "-f", "--edit", "-e") for a in rest):
            return "git config may only change the repository's own settings"
        key = next((a for a in rest if not a.startswith("-")), "").lower()
        if key.startswith(GIT_CONFIG_PREFIXES) or key.endswith((".command", ".textconv")):
            return f"git config {key} is not allowed (it can make git run programs)"
    return None


def _python_rule(args: list[str], ctx: ToolContext) -> str | None:
    inline = any(a.startswith("-c") for a in args[:1])
    if inline and ctx.agent_config.get("allow_python_c") is False:
        return "python -c is not allowed for this agent; write a file and run it"
    if args[:2] == ["-m", "pip"] or (args[:1] == ["-m"] and args[1:2] == ["ensurepip"]):
        return "pip does not run inside the jail; use the pip_install tool"
    return None


def _make_rule(args: list[str], ctx: ToolContext) -> str | None:
    for arg in args:
        name = arg.split("=", 1)[0] if "=" in arg and not arg.startswith("-") else ""
        if name in ("SHELL", ".SHELLFLAGS", "MAKESHELL", "MAKEFLAGS", "MFLAGS"):
            return f"make {name}= is not allowed"
        if arg in ("-E", "--eval") or arg.startswith("--eval="):
            return "make --eval is not allowed"
    return None


def _sort_rule(args: list[str], ctx: ToolContext) -> str | None:
    if any(a.startswith("--compress-program") for a in args):
        return "sort --compress-program runs a program"
    return None


RULES: dict[str, Callable[[list[str], ToolContext], str | None]] = {
    "find": _find_rule, "git": _git_rule, "python": _python_rule, "python3": _python_rule,
    "make": _make_rule, "sort": _sort_rule,
}


def check_command(argv: list[str], ctx: ToolContext) -> str | None:
    """Why `argv` is refused for this agent, or None when it may run."""
    if not argv:
        return "empty command"
    program, args = argv[0], argv[1:]
    if "/" in program:
        return "give the program by name (e.g. python), not by path"
    allowed = ctx.allowed_commands if ctx.allowed_commands is not None else DEFAULT_ALLOWED
    if program not in allowed:
        return f"{program} is not on this agent's allow-list: {', '.join(sorted(allowed))}"
    if any("proxycommand" in a.lower() for a in args):
        return "ProxyCommand options are not allowed"
    rule = RULES.get(program)
    reason = rule(args, ctx) if rule else None
    if reason:
        return reason
    shell = next((a for a in args if a in SHELL_TOKENS or a.startswith(("$(", "`"))), None)
    if shell:
        return f"{shell!r}: commands run without a shell; run one program per call"
    return None


def _limits(ctx: ToolContext) -> Limits:
    names = {f.name for f in dataclasses.fields(Limits)}
    overrides: dict[str, Any] = ctx.agent_config.get("limits") or {}
    return Limits(**{k: int(v) for k, v in overrides.items() if k in names})


async def refuse(ctx: ToolContext, tool_name: str, reason: str) -> ToolRefused:
    """Record a refusal event and return the exception to raise."""
    await ctx.emit("tool_refused", {"tool": tool_name, "reason": reason})
    return ToolRefused(reason)


@tool(
    "run_command",
    "Run one program (no shell: no pipes, redirections or &&) in the task's sandbox, with "
    "the workspace as the current folder. Only allow-listed programs may run.",
    {
        "properties": {
            "command": {"type": "string", "description": "e.g. python -m pytest -q src"},
            "timeout": {"type": "integer", "description": f"seconds (max {MAX_TIMEOUT_S})"},
        },
        "required": ["command"],
    },
)
async def run_command(
    ctx: ToolContext, command: str, timeout: int | None = None  # noqa: ASYNC109
) -> ToolResult:
    try:
        argv = shlex.split(command)
    except ValueError as exc:
        raise ToolError(f"could not parse the command ({exc})") from exc
    reason = check_command(argv, ctx)
    if reason:
        raise await refuse(ctx, "run_command", reason)
    if argv[0] == "pytest":  # console scripts' shebangs name the host python; -m finds the venv's
        argv = ["python", "-m", "pytest", *argv[1:]]
    wall = min(max(int(timeout or ctx.agent_config.get("command_timeout_s", DEFAULT_TIMEOUT_S)),
                   1), MAX_TIMEOUT_S)
    try:
        res = await run_jailed(argv, workspace=ctx.workspace, settings=ctx.settings,
                               timeout=wall, limits=_limits(ctx))
    except (WorkspaceTooBig, PathRefused) as exc:
        raise await refuse(ctx, "run_command", str(exc)) from exc
    head = f"exit code {res.exit_code}" + (" (timed out)" if res.timed_out else "")
    return ToolResult(f"{head}\n{res.output}", {"argv": argv, **res.data()})
