"""pip_install: packages into the task's venv with uv, run on the host (the jail has no network).

Host safety: uv is pointed at the host's own interpreter with `--prefix <fresh stage>`, never
at the venv's python, because uv runs the interpreter it targets and the venv's site-packages
(.pth, sitecustomize) is agent-writable; nothing compiles or imports what was installed. The
stage is copied into .venv inside the jail as the task's uid (see `install`). uv copies out of
its cache (UV_LINK_MODE=copy), and the cache (under var/, root's, 0700) is never visible to
a task, so no task can poison what another installs. Source distributions are refused unless
`settings.pip_allow_sdist`, because building one runs the package's code on the host.
"""

from __future__ import annotations

import asyncio
import os
import secrets
from pathlib import Path
from typing import Any

from app.sandbox import fs
from app.sandbox.jail import host_python, run_jailed
from app.sandbox.limits import Limits
from app.sandbox.ownership import walk
from app.sandbox.uids import uid_for
from app.sandbox.venv import uv_binary, venv_is_plain
from app.tools.commands import refuse
from app.tools.errors import ToolError
from app.tools.registry import ToolContext, ToolResult, tool
from app.tools.venvs import MAX_PACKAGES, check_spec, ensure_venv

MAX_SCRIPT_BYTES = 1 << 20
# The host's own way to the index (proxy, CA bundle, mirror); uv runs on the host, not jailed.
_HOST_NET_ENV = {"HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy",
                 "no_proxy", "SSL_CERT_FILE", "SSL_CERT_DIR", "UV_INDEX_URL", "UV_DEFAULT_INDEX",
                 "UV_EXTRA_INDEX_URL", "UV_NATIVE_TLS", "UV_SYSTEM_CERTS", "UV_FIND_LINKS",
                 "UV_NO_INDEX"}
def _fix_shebangs(root: Path, host_exe: str) -> None:
    """Console scripts name the host python; inside the jail they must use the venv's. Runs on
    the fresh staging prefix `root` (root's, 0700); only regular single-link files of bin/ are
    rewritten, through fs (a link there is left alone, never followed)."""
    old = f"#!{host_exe}".encode()
    try:
        entries = fs.listdir(root, "bin")
    except fs.PathRefused:
        return
    for entry in entries:
        if not entry.safe_file or entry.size > MAX_SCRIPT_BYTES:
            continue
        rel = f"bin/{entry.name}"
        try:
            data = fs.read_bytes(root, rel, MAX_SCRIPT_BYTES)
        except fs.PathRefused:
            continue
        first, nl, rest = data.partition(b"\n")
        if first.strip() == old and nl:
            fs.write_bytes(root, rel, b"#!/workspace/.venv/bin/python\n" + rest,
                           mode=entry.mode & 0o777)


def _uv_env(settings: Any) -> dict[str, str]:
    cache = settings.var_dir / "uv-cache"
    cache.mkdir(mode=0o700, parents=True, exist_ok=True)
    env = {k: v for k, v in os.environ.items() if k in _HOST_NET_ENV}
    # copy, never hard-link: no inode of the cache may ever appear in a workspace
    env.update({"PATH": "/usr/local/bin:/usr/bin:/bin", "UV_NO_CONFIG": "1",
                "UV_CACHE_DIR": str(cache), "HOME": str(settings.var_dir),
                "UV_LINK_MODE": "copy", "UV_COMPILE_BYTECODE": "0"})
    return env


async def _uv_install(ctx: ToolContext, uv: str, stage: Path, specs: list[str], *,
                      find_links: Path | None = None) -> tuple[int, str]:
    """uv on the host, into the fresh `stage` prefix; (exit code, output tail). With
    `find_links`, only from that folder of wheels (no index, no network)."""
    exe, _ = host_python()
    argv = [uv, "pip", "install", "--python", exe, "--prefix", str(stage), "--quiet"]
    if find_links is not None:
        argv += ["--no-index", "--find-links", str(find_links)]
    if not ctx.settings.pip_allow_sdist:
        argv.append("--no-build")
    proc = await asyncio.create_subprocess_exec(
        *argv, *specs, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        env=_uv_env(ctx.settings), start_new_session=True)
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), ctx.settings.pip_timeout_s)
    except TimeoutError as exc:
        proc.kill()
        await proc.wait()
        raise ToolError(f"pip_install timed out after {ctx.settings.pip_timeout_s:g}s") from exc
    await asyncio.to_thread(_fix_shebangs, stage, exe)
    return proc.returncode or 0, out.decode("utf-8", errors="replace")[-5000:]


async def _jailed(ctx: ToolContext, argv: list[str]) -> None:
    res = await run_jailed(argv, workspace=ctx.workspace, settings=ctx.settings, timeout=300,
                           limits=Limits(cpu_s=300))
    if res.exit_code:
        raise ToolError(f"could not copy the packages into the venv: {res.output[-2000:]}")


async def install(ctx: ToolContext, uv: str, specs: list[str], *,
                  find_links: Path | None = None) -> tuple[int, str]:
    """Install into a fresh prefix inside the workspace (root's, 0700, while uv writes), hand it
    to the task's uid, then copy it into .venv and remove it INSIDE the jail: no host process
    ever writes through a path the task could have planted, and nothing runs the new code."""
    name = f".pip-stage-{secrets.token_hex(6)}"
    stage = ctx.workspace.root / name
    os.mkdir(stage, 0o700)  # a new name: mkdir never follows a link
    try:
        code, text = await _uv_install(ctx, uv, stage, specs, find_links=find_links)
        if code == 0:
            ids = uid_for(ctx.workspace.root, ctx.settings)
            if ids:
                await asyncio.to_thread(walk, str(stage), *ids, skip=())
                os.chown(stage, *ids, follow_symlinks=False)
            await _jailed(ctx, ["cp", "-a", "--", f"/workspace/{name}/.", "/workspace/.venv/"])
    finally:
        await _jailed(ctx, ["rm", "-rf", "--", f"/workspace/{name}"])
    return code, text


@tool(
    "pip_install",
    "Install Python packages (PyPI names with optional versions) into the task's venv.",
    {
        "properties": {"packages": {"type": "array", "items": {"type": "string"}}},
        "required": ["packages"],
    },
)
async def pip_install(ctx: ToolContext, packages: list[str]) -> ToolResult:
    specs = [str(p).strip() for p in packages if str(p).strip()]
    if not specs or len(specs) > MAX_PACKAGES:
        raise ToolError(f"give 1 to {MAX_PACKAGES} packages")
    for spec in specs:
        reason = check_spec(spec, ctx.settings.pip_allow, ctx.settings.pip_deny)
        if reason:
            raise await refuse(ctx, "pip_install", reason)
    uv = uv_binary()
    if not uv:
        raise ToolError("uv is not available on this worker")
    await ensure_venv(ctx)  # a planted .venv link is removed, not followed
    if not await asyncio.to_thread(venv_is_plain, ctx.workspace.root):
        raise await refuse(ctx, "pip_install", ".venv holds links where its folders should be")
    await ctx.emit("pip_install", {"packages": specs, "status": "started"})
    code, text = await install(ctx, uv, specs)
    await ctx.emit("pip_install", {"packages": specs, "status": "finished", "exit_code": code})
    if code:
        raise ToolError(f"uv pip install failed (exit {code}):\n{text}")
    return ToolResult(f"installed {', '.join(specs)}\n{text}".strip(),
                      {"packages": specs, "exit_code": 0})
