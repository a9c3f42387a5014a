"""pip_install: packages into the task's venv with uv, run on the host (the jail has no network).

Host safety: uv is pointed at the host's own interpreter with `--prefix <venv>`, never at the
venv's python, because uv runs the interpreter it targets and the venv's site-packages (.pth,
sitecustomize) is agent-writable. Source distributions are refused unless
`settings.pip_allow_sdist`, because building one runs the package's code on the host.
"""

from __future__ import annotations

import asyncio
import os
import re
from pathlib import Path

from app.sandbox import fs
from app.sandbox.jail import host_python
from app.sandbox.venv import create_venv, uv_binary, venv_is_plain
from app.tools.commands import refuse
from app.tools.errors import ToolError
from app.tools.registry import ToolContext, ToolResult, tool

MAX_PACKAGES = 20
MAX_SCRIPT_BYTES = 1 << 20
# The host's own way to the index (proxy, CA bundle, mirror); uv runs on the host, not jailed.
_HOST_NET_ENV = {"HTTP_PROXY", "HTTPS_PROXY", "NO_PROXY", "http_proxy", "https_proxy",
                 "no_proxy", "SSL_CERT_FILE", "SSL_CERT_DIR", "UV_INDEX_URL", "UV_DEFAULT_INDEX",
                 "UV_EXTRA_INDEX_URL", "UV_NATIVE_TLS", "UV_SYSTEM_CERTS"}
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


def _fix_shebangs(root: Path, host_exe: str) -> None:
    """Console scripts name the host python; inside the jail they must use the venv's. Only
    regular single-link files of .venv/bin are rewritten (through fs: a link there is left
    alone, never followed to the host script it points at)."""
    old = f"#!{host_exe}".encode()
    for entry in fs.listdir(root, ".venv/bin"):
        if not entry.safe_file or entry.size > MAX_SCRIPT_BYTES:
            continue
        rel = f".venv/bin/{entry.name}"
        try:
            data = fs.read_bytes(root, rel, MAX_SCRIPT_BYTES)
        except fs.PathRefused:
            continue
        first, nl, rest = data.partition(b"\n")
        if first.strip() == old and nl:
            fs.write_bytes(root, rel, b"#!/workspace/.venv/bin/python\n" + rest,
                           mode=entry.mode & 0o777)


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
    venv = ctx.workspace.venv
    exe, _ = host_python()
    await asyncio.to_thread(create_venv, venv)  # a planted .venv link is removed, not followed
    if not await asyncio.to_thread(venv_is_plain, ctx.workspace.root):
        raise await refuse(ctx, "pip_install", ".venv holds links where its folders should be")
    argv = [uv, "pip", "install", "--python", exe, "--prefix", str(venv), "--quiet"]
    if not ctx.settings.pip_allow_sdist:
        argv.append("--no-build")
    cache = ctx.settings.var_dir / "uv-cache"
    env = {k: v for k, v in os.environ.items() if k in _HOST_NET_ENV}
    env.update({"PATH": "/usr/local/bin:/usr/bin:/bin", "UV_NO_CONFIG": "1",
                "UV_CACHE_DIR": str(cache), "HOME": str(ctx.settings.var_dir)})
    await ctx.emit("pip_install", {"packages": specs, "status": "started"})
    proc = await asyncio.create_subprocess_exec(
        *argv, *specs, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.STDOUT,
        env=env, start_new_session=True)
    try:
        out, _ = await asyncio.wait_for(proc.communicate(), ctx.settings.pip_timeout_s)
    except TimeoutError as exc:
        proc.kill()
        await proc.wait()
        raise ToolError(f"pip_install timed out after {ctx.settings.pip_timeout_s:g}s") from exc
    text = out.decode("utf-8", errors="replace")[-5000:]
    await asyncio.to_thread(_fix_shebangs, ctx.workspace.root, exe)
    await ctx.emit("pip_install", {"packages": specs, "status": "finished",
                                   "exit_code": proc.returncode})
    if proc.returncode:
        raise ToolError(f"uv pip install failed (exit {proc.returncode}):\n{text}")
    return ToolResult(f"installed {', '.join(specs)}\n{text}".strip(),
                      {"packages": specs, "exit_code": 0})
