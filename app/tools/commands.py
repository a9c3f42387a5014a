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

from app.sandbox import fs
from app.sandbox.limits import Limits, WorkspaceTooBig
from app.sandbox.workspace import PathRefused
from app.tools.builtins import run_builtin
from app.tools.errors import ToolError, ToolRefused
from app.tools.registry import ToolContext, ToolResult, tool
from app.tools.venvs import ensure_venv

DEFAULT_ALLOWED = (
    "python", "python3", "pytest", "ls", "cat", "head", "tail", "grep", "find", "wc", "sort",
    "diff", "git", "make", "echo", "true", "mkdir", "cp", "mv", "touch",
)
DEFAULT_TIMEOUT_S = 120
MAX_TIMEOUT_S = 600
SHELL_TOKENS = {"|", "||", "&&", ";", "&", ">", ">>", "<", "<<", "2>", "2>&1", "&>", "$(", "`"}

FIND_ACTIONS = {"-exec", "-execdir", "-ok", "-okdir", "-delete", "-fprint", "-fprint0",
                "-fprintf", "-fls"}
# Options that name a program to run, a config to load or another repository; any unambiguous
# abbreviation counts too (git and GNU tools accept unique prefixes: --upload-pa=…).
GIT_FORBIDDEN_LONG = ("upload-pack", "receive-pack", "exec-path", "config-env", "exec",
                      "extcmd", "tool", "run", "open-files-in-pager", "git-dir", "work-tree",
                      "namespace", "super-prefix", "paginate", "config", "template",
                      "separate-git-dir", "reference", "reference-if-able", "server-option",
                      "remote")
# short forms by subcommand: clone -c (config), clone/fetch/ls-remote -u (upload-pack),
# rebase -x (exec), grep -O (open files in a pager)
GIT_FORBIDDEN_SHORT = {"clone": {"-c", "-u"}, "fetch": {"-u"}, "pull": {"-u"},
                       "ls-remote": {"-u"}, "archive": {"-u"}, "rebase": {"-x"}, "grep": {"-O"}}
SHORT_MEANS = {"-c": "--config", "-u": "--upload-pack", "-x": "--exec",
               "-O": "--open-files-in-pager"}
GIT_QUERIES = {"rev-parse": {"git-dir", "work-tree"}, "remote": {"remote"},
               "config": {"config"}}  # options that only print, or are the command's own
# What may come before git's subcommand; everything else there (-c, --git-dir, --work-tree,
# --exec-path, --config-env, -p/--paginate, --namespace, …) is refused.
GIT_GLOBAL_OK = {"--no-pager", "-P", "--no-optional-locks", "--literal-pathspecs",
                 "--glob-pathspecs", "--noglob-pathspecs", "--icase-pathspecs",
                 "--no-replace-objects", "--version", "--help", "-h"}
# Built-in subcommands only: anything else would be an alias from a config the model wrote.
GIT_SUBCOMMANDS = {
    "add", "am", "annotate", "apply", "archive", "blame", "branch", "cat-file", "check-attr",
    "check-ignore", "checkout", "cherry", "cherry-pick", "clean", "clone", "commit", "config",
    "count-objects", "describe", "diff", "diff-files", "diff-index", "diff-tree", "fetch",
    "for-each-ref", "format-patch", "fsck", "gc", "grep", "hash-object", "help", "init", "log",
    "ls-files", "ls-remote", "ls-tree", "merge", "merge-base", "mv", "name-rev", "notes",
    "pull", "push", "range-diff", "rebase", "reflog", "remote", "reset", "restore", "rev-list",
    "rev-parse", "revert", "rm", "shortlog", "show", "show-branch", "show-ref", "stash",
    "status", "switch", "symbolic-ref", "tag", "update-index", "version", "whatchanged",
    "worktree", "write-tree",
}
GIT_FORBIDDEN_SUBCOMMANDS = {"filter-branch", "daemon", "difftool", "mergetool", "upload-pack",
                             "receive-pack", "shell", "credential", "instaweb", "web--browse",
                             "remote-ext", "submodule", "bisect", "send-email", "imap-send"}
GIT_CONFIG_PREFIXES = ("core.", "alias.", "filter.", "diff.", "merge.", "credential.",
                       "include.", "includeif.", "remote.", "url.", "protocol.", "uploadpack.",
                       "receivepack.", "sequence.", "gpg.", "ssh.", "http.", "interactive.",
                       "pager.", "status.", "color.", "log.", "commit.", "tag.", "fetch.",
                       "push.", "pull.", "transfer.", "submodule.", "lfs.", "web.",
                       "browser.", "man.", "help.", "trailer.", "sendemail.", "difftool.",
                       "mergetool.", "receive.", "rebase.", "notes.", "instaweb.")
# config keys whose value is a program or a driver, whatever the section
GIT_CONFIG_PROGRAM_SUFFIXES = (".command", ".cmd", ".textconv", ".program", ".helper",
                               ".driver", ".clean", ".smudge", ".process", ".path")
GIT_OUTPUT_OPTIONS = {"--output", "-o", "--output-directory"}
SORT_FORBIDDEN_LONG = ("compress-program",)
MAKE_FORBIDDEN_LONG = ("eval",)
# cp, mv, touch, mkdir must not write git's own metadata (.git/config, .git/hooks/…): a planted
# config could make an allowed git command run a program.
WRITES_PATHS = {"cp", "mv", "touch", "mkdir"}


# Whole long options of allowed programs that happen to be prefixes of refused ones
# (`git format-patch --to=…` is not `--tool`).
REAL_SHORT_OPTIONS = frozenset({"to"})


def refused_long_option(arg: str, names: tuple[str, ...]) -> str | None:
    """The refused option `arg` spells or abbreviates (`--upload-pa=x` → upload-pack), if any."""
    if not arg.startswith("--") or len(arg) < 4:
        return None
    given = arg[2:].split("=", 1)[0].lower()
    if given in REAL_SHORT_OPTIONS:  # a whole option of its own, not an abbreviation
        return None
    return next((name for name in names if name == given or name.startswith(given)), None)


def _find_rule(args: list[str], ctx: ToolContext) -> str | None:
    bad = sorted(FIND_ACTIONS & set(args))
    return f"find {bad[0]} runs or deletes; use find to list, then act on files" if bad else None


def _git_rule(args: list[str], ctx: ToolContext) -> str | None:
    i = 0
    while i < len(args) and args[i].startswith("-"):  # git's global options
        arg = args[i]
        if arg == "-C" and i + 1 < len(args):
            where = args[i + 1]
            if where.startswith("/") or ".." in where.split("/") or ".git" in where.split("/"):
                return "git -C takes a folder inside the workspace (relative, no ..)"
            i += 2
            continue
        if arg not in GIT_GLOBAL_OK:
            return f"git {arg.split('=')[0]} is not allowed before the subcommand " \
                "(configuration, other repositories and pagers can run programs)"
        i += 1
    sub = args[i] if i < len(args) else ""
    rest = args[i + 1:]
    if sub in GIT_FORBIDDEN_SUBCOMMANDS:
        return f"git {sub} is not allowed"
    if sub and sub not in GIT_SUBCOMMANDS:
        return f"git {sub!r} is not a git command agents may run (aliases are not allowed)"
    for n, arg in enumerate(rest):
        if arg == "--":
            break
        # an output file or folder inside git's own metadata (log --output=.git/config,
        # format-patch -o .git/hooks)
        target = arg.split("=", 1)[1] if arg.startswith("--") and "=" in arg else (
            rest[n + 1] if arg in GIT_OUTPUT_OPTIONS and n + 1 < len(rest) else "")
        if sub != "config" and ".git" in target.replace("\\", "/").split("/"):
            return f"git {arg.split('=')[0]} may not point into git's own metadata (.git/)"
        name = refused_long_option(arg, GIT_FORBIDDEN_LONG)
        if name and name not in GIT_QUERIES.get(sub, set()):
            return f"git option --{name} (given as {arg.split('=')[0]}) is not allowed " \
                "(it names a program, a config or another repository)"
        if arg.startswith("-") and not arg.startswith("--"):
            # a cluster of short flags (-xO) or a flag with its value attached (-Oless)
            flags = {f"-{ch}" for ch in arg[1:]} if arg[1:].isalpha() else {arg[:2]}
            bad = flags & GIT_FORBIDDEN_SHORT.get(sub, set())
            if bad:
                flag = min(bad)
                return f"git {sub} {flag} ({SHORT_MEANS[flag]}) is not allowed (it runs a " \
                    "program or loads a config)"
    if sub == "config":
        if any(a in ("--global", "--system", "--file", "-f", "--edit", "-e", "--blob")
               or a.startswith(("--file=", "--blob=")) for a in rest):
            return "git config may only change the repository's own settings"
        # every word is checked, not only the first: `--type bool alias.x`, `set alias.x` and
        # `--default x core.pager` put the key after another word
        for word in (a.lower() for a in rest if not a.startswith("-")):
            if word.startswith(GIT_CONFIG_PREFIXES) or word.endswith(GIT_CONFIG_PROGRAM_SUFFIXES):
                return f"git config {word} is not allowed (it can make git run programs)"
    return None


def _paths_rule(args: list[str], ctx: ToolContext) -> str | None:
    for arg in args:
        # the path may follow an option: --target-directory=.git, -t.git, --suffix=/.git/x
        spellings = [arg, *arg.split("=")[1:]]
        if arg.startswith("-") and not arg.startswith("--"):
            spellings.append(arg[2:])
        if any(".git" in s.replace("\\", "/").split("/") for s in spellings):
            return "git's own metadata (.git/) is not written with file commands; use git"
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
        # a variable given on the command line, with any assignment operator (:=, ::=, +=, ?=, !=)
        name = arg.split("=", 1)[0].rstrip(":+?! \t") if "=" in arg and not arg.startswith("-") \
            else ""
        if name in ("SHELL", ".SHELLFLAGS", "MAKESHELL", "MAKEFLAGS", "MFLAGS"):
            return f"make {name}= is not allowed"
        if arg.startswith("-E") and not arg.startswith("--") or \
                refused_long_option(arg, MAKE_FORBIDDEN_LONG):
            return f"make --eval (given as {arg.split('=')[0]}) is not allowed"
    return None


def _sort_rule(args: list[str], ctx: ToolContext) -> str | None:
    if any(refused_long_option(a, SORT_FORBIDDEN_LONG) for a in args):
        return "sort --compress-program (in any abbreviation) runs a program"
    return _paths_rule(args, ctx)  # sort -o/--output writes a file


RULES: dict[str, Callable[[list[str], ToolContext], str | None]] = {
    "find": _find_rule, "git": _git_rule, "python": _python_rule, "python3": _python_rule,
    "make": _make_rule, "sort": _sort_rule, **{name: _paths_rule for name in WRITES_PATHS},
}


def check_command(argv: list[str], ctx: ToolContext) -> str | None:
    """Why `argv` is refused for this agent, or None when it may run."""
    if not argv:
        return "empty command"
    if any("\x00" in a for a in argv):
        return "the command contains a NUL byte"
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
    "Run one program in the task's sandbox, in a shell session that lasts the whole task: "
    "`cd DIR`, `export NAME=VALUE`, `unset NAME`, `source DIR/bin/activate` and `deactivate` "
    "carry over to later commands (it starts in the workspace, with .venv active). One "
    "program per call: no pipes, redirections, && or $VARIABLES. Only allow-listed programs "
    "may run.",
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
    if "\x00" in command:
        raise await refuse(ctx, "run_command", "the command contains a NUL byte")
    try:
        argv = shlex.split(command)
    except ValueError as exc:
        raise ToolError(f"could not parse the command ({exc})") from exc
    try:
        done = await run_builtin(ctx, argv)
    except PathRefused as exc:
        raise await refuse(ctx, "run_command", str(exc)) from exc
    if done is not None:
        return done
    reason = check_command(argv, ctx)
    if reason:
        raise await refuse(ctx, "run_command", reason)
    if argv[0] == "pytest":  # console scripts' shebangs name the host python; -m finds the venv's
        argv = ["python", "-m", "pytest", *argv[1:]]
    wall = min(max(int(timeout or ctx.agent_config.get("command_timeout_s", DEFAULT_TIMEOUT_S)),
                   1), MAX_TIMEOUT_S)
    shell = ctx.services.shell
    if shell.state.cwd != "." and fs.kind(ctx.workspace.root, shell.state.cwd) != "dir":
        gone, shell.state.cwd = shell.state.cwd, "."
        raise ToolError(f"the shell's folder {gone} no longer exists; the shell is back in "
                        "/workspace: run the command again (or cd first)")
    await ensure_venv(ctx)
    try:
        res = await shell.run(argv, workspace=ctx.workspace, settings=ctx.settings,
                              timeout=wall, limits=_limits(ctx))
    except (WorkspaceTooBig, PathRefused) as exc:
        raise await refuse(ctx, "run_command", str(exc)) from exc
    head = f"exit code {res.exit_code}" + (" (timed out)" if res.timed_out else "")
    return ToolResult(f"{head}\n{res.output}", {"argv": argv, **res.data()})
