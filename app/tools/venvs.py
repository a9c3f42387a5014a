"""The task's venv, made on first use, and the default packages it comes with.

    ensure_venv(ctx)         before a command, run_python or pip_install: a plain `.venv` (a
                             planted link is removed, never followed), made with uv the first
                             time it is needed, so a task that never runs Python pays nothing;
                             a fresh one gets the agent's default packages (`venv` and
                             `venv_packages` events)
    install_defaults(ctx, …) the shared base layer holding them (app.sandbox.wheels), linked in
                             by one .pth file: nothing is installed or copied per task
    check_spec(spec, …)      the requirement policy pip_install and the defaults share
"""

from __future__ import annotations

import asyncio
import re
import subprocess
import time

from app.core.config import Settings
from app.sandbox import fs, wheels
from app.sandbox.venv import create_venv
from app.tools.errors import ToolError
from app.tools.registry import ToolContext

MAX_PACKAGES = 20
_SPEC = re.compile(
    r"^(?P<name>[A-Za-z0-9](?:[A-Za-z0-9._-]{0,98}[A-Za-z0-9])?)"
    r"(?:\[[A-Za-z0-9._-]+(?:,[A-Za-z0-9._-]+)*\])?"
    r"(?:(?:==|>=|<=|~=|!=|>|<)[A-Za-z0-9.*+!]+(?:,(?:==|>=|<=|~=|!=|>|<)[A-Za-z0-9.*+!]+)*)?$"
)


def normalize(name: str) -> str:
    """PEP 503 normalized project name."""
    return re.sub(r"[-_.]+", "-", name).lower()


def check_spec(spec: str, allow: list[str], deny: list[str]) -> str | None:
    """Why `spec` may not be installed, or None. Only names with extras and versions pass."""
    m = _SPEC.match(spec.replace(" ", ""))
    if not m:
        return (f"{spec!r} is not a plain requirement (name[extras]<op>version); URLs, paths, "
                "options and markers are not allowed")
    name = normalize(m.group("name"))
    if name in {normalize(d) for d in deny}:
        return f"{name} is on the deny-list"
    if allow and name not in {normalize(a) for a in allow}:
        return f"{name} is not on the allow-list"
    return None




def default_packages(agent_config: dict[str, object], settings: Settings) -> list[str]:
    """The agent's `venv_packages` when it sets them (`[]`: a bare venv), else the settings'."""
    configured = agent_config.get("venv_packages")
    chosen = configured if isinstance(configured, list) else settings.venv_default_packages
    return [str(p) for p in chosen][:MAX_PACKAGES]


async def ensure_venv(ctx: ToolContext) -> None:
    """The task's `.venv`, made now if it is not there whole (see the module's docstring): one
    a killed `uv venv` left without lib/ is made again, and a venv made without its default
    packages linked (its maker died in between) gets them. A failure to link them is an event,
    not an error (the agent can still pip_install)."""
    root = ctx.workspace.root
    packages = default_packages(ctx.agent_config, ctx.settings)
    shell = ctx.services.shell
    whole = fs.kind(root, ".venv/lib") == "dir" and fs.kind(root, ".venv/bin") == "dir"
    if whole and (not packages or shell.defaults_tried
                  or fs.kind(root, f"{wheels.SITE}/{wheels.PTH}") == "file"):
        return
    if not whole:
        started = time.perf_counter()
        if fs.kind(root, ".venv") is not None:
            await asyncio.to_thread(fs.remove, root, ".venv")  # half made, or planted
        made_with = await asyncio.to_thread(create_venv, ctx.workspace.venv,
                                            cache_dir=ctx.settings.var_dir / "cache" / "uv")
        await ctx.emit("venv", {"made_with": made_with,
                                "ms": round((time.perf_counter() - started) * 1000, 1)})
    if not packages:
        return
    shell.defaults_tried = True  # once a run: an offline host is not asked at every command
    started = time.perf_counter()
    try:
        code, text = await install_defaults(ctx, packages)
    except ToolError as exc:
        code, text = 1, str(exc)
    await ctx.emit("venv_packages", {
        "packages": packages, "ok": code == 0, "seconds": round(time.perf_counter() - started, 2),
        **({} if code == 0 else {"error": text[-1000:]})})


async def install_defaults(ctx: ToolContext, specs: list[str]) -> tuple[int, str]:
    """The agent's default packages for a fresh venv: the shared base layer holding them
    (built once per worker host from the local wheel cache; read-only in every jail) linked
    into the venv by one .pth file. Nothing is installed or copied per task."""
    for spec in specs:
        reason = check_spec(spec, [], ctx.settings.pip_deny)
        if reason:
            raise ToolError(f"default package {spec!r}: {reason}")
    try:
        layer = await asyncio.to_thread(wheels.base_layer, ctx.settings, specs)
    except (RuntimeError, OSError, subprocess.SubprocessError) as exc:
        raise ToolError(str(exc)) from exc
    if layer is None:
        return 0, ""
    await asyncio.to_thread(wheels.link_base, ctx.workspace.root, layer)
    return 0, f"linked the base layer {layer.name}"
