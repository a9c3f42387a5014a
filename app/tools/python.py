"""run_python: Python code or a workspace script, run by the task's venv inside the jail."""

from __future__ import annotations

import asyncio
import itertools

from app.sandbox import fs
from app.sandbox.jail import JAIL_WORKSPACE
from app.tools.commands import DEFAULT_TIMEOUT_S, MAX_TIMEOUT_S, _limits
from app.tools.errors import ToolError
from app.tools.registry import ToolContext, ToolResult, tool
from app.tools.venvs import ensure_venv

_counter = itertools.count(1)


@tool(
    "run_python",
    "Run Python in the task's venv inside the sandbox, in the shell's current folder: either "
    "`code` or a workspace `path` (from the workspace root).",
    {
        "properties": {
            "code": {"type": "string", "description": "source to run"},
            "path": {"type": "string", "description": "workspace script, e.g. src/main.py"},
            "timeout": {"type": "integer", "description": f"seconds (max {MAX_TIMEOUT_S})"},
        },
    },
)
async def run_python(
    ctx: ToolContext, code: str | None = None, path: str | None = None,
                     timeout: int | None = None) -> ToolResult:  # noqa: ASYNC109
    if bool(code) == bool(path):
        raise ToolError("give exactly one of code or path")
    if code:
        rel = f".taskbench/snippet_{next(_counter)}.py"
        await asyncio.to_thread(fs.write_text, ctx.workspace.root, rel, code)
    else:
        rel = ctx.workspace.relative(ctx.workspace.resolve(str(path), must_exist=True))
    await ensure_venv(ctx)
    shell = ctx.services.shell
    python = "python" if shell.state.venv and fs.kind(ctx.workspace.root, shell.state.venv) \
        == "dir" else "python3"
    wall = min(max(int(timeout or DEFAULT_TIMEOUT_S), 1), MAX_TIMEOUT_S)
    # in the task's shell (its folder, variables and venv), the script named from the root
    res = await shell.run([python, f"{JAIL_WORKSPACE}/{rel}"], workspace=ctx.workspace,
                          settings=ctx.settings, timeout=wall, limits=_limits(ctx))
    head = f"exit code {res.exit_code}" + (" (timed out)" if res.timed_out else "")
    return ToolResult(f"{head}\n{res.output}", {"script": rel, **res.data()})
