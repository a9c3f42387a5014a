"""The jailed command runner: every command an agent runs goes through `run_jailed`.

    run_jailed(argv, workspace=…, settings=…, timeout=…)
    ├── prepare_workspace   size cap; files handed to the sandbox uid (limits.py)
    ├── mode "bwrap"        bubblewrap, unprivileged, in new user/pid/net/ipc/uts/cgroup/mount
    │                       namespaces; only /usr, the interpreter prefix (read-only) and the
    │                       workspace (read-write, at /workspace) are visible
    └── mode "none"         restricted subprocess: same limits, env and uid, plus argument path
                            checks; used only where bubblewrap cannot run, and said loudly

The child sets its rlimits and drops to `settings.sandbox_uid` before exec (never root: a
root-mapped sandbox defeats RLIMIT_NPROC), so the limits cover the whole process tree.
"""

from __future__ import annotations

import asyncio
import logging
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from app.core.config import Settings
from app.sandbox.capture import execute
from app.sandbox.envpolicy import fallback_argv, jail_env, redact
from app.sandbox.hostgit import host_git_env, sanitize_git_repo
from app.sandbox.limits import (
    Limits,
    WorkspaceTooBig,
    apply_rlimits,
    drop_privileges,
    prepare_workspace,
)
from app.sandbox.mounts import stage_binds, stage_dir_for
from app.sandbox.workspace import Workspace

__all__ = [
    "CommandResult", "host_git_env", "host_python", "run_jailed", "run_jailed_sync",
    "sandbox_mode", "sanitize_git_repo",
]
log = logging.getLogger(__name__)
JAIL_WORKSPACE = "/workspace"
_probe_cache: dict[tuple[int, int], str] = {}


@dataclass
class CommandResult:
    """One finished command: what the model sees (output) and what the event log records."""

    exit_code: int
    output: str
    timed_out: bool
    cpu_s: float
    peak_rss_kb: int
    duration_ms: float
    sandbox: str
    output_bytes: int = 0
    truncated: bool = False
    workspace_bytes: int = 0

    def data(self) -> dict[str, Any]:
        """Figures for ToolResult.data (everything but the output text)."""
        d = asdict(self)
        d.pop("output")
        d["cpu_s"] = round(self.cpu_s, 3)
        d["duration_ms"] = round(self.duration_ms, 1)
        return d


def host_python() -> tuple[str, str]:
    """(interpreter, prefix) of the host Python that task venvs are made from."""
    exe = getattr(sys, "_base_executable", None) or sys.executable
    return os.path.realpath(exe), os.path.realpath(sys.base_prefix)


def sandbox_mode(settings: Settings) -> str:
    """"bwrap" when the jail works, else "none"; RuntimeError if bwrap is required but broken."""
    wanted = (settings.sandbox or "").strip().lower()
    if wanted == "none":
        return "none"
    key = (settings.sandbox_uid, settings.sandbox_gid)
    if key not in _probe_cache:
        _probe_cache[key] = _probe_bwrap(settings)
    error = _probe_cache[key]
    if not error:
        return "bwrap"
    if wanted == "bwrap":
        raise RuntimeError(f"TASKBENCH_SANDBOX=bwrap but bubblewrap cannot run: {error}")
    log.warning("SANDBOX DEGRADED: bubblewrap unusable (%s); commands run as a restricted "
                "subprocess WITHOUT namespaces. Set TASKBENCH_SANDBOX=bwrap to refuse.", error)
    return "none"


def _probe_bwrap(settings: Settings) -> str:
    """'' if `true` runs under bubblewrap here, else why not."""
    if not shutil.which("bwrap"):
        return "bwrap is not installed"
    with tempfile.TemporaryDirectory(prefix="taskbench-probe-") as tmp:
        try:
            res = _run_sync(["true"], Workspace(Path(tmp)), settings, 10.0, ".", None,
                            Limits(), False, "bwrap")
        except Exception as exc:  # noqa: BLE001 - any failure means "bwrap unusable"
            return f"{type(exc).__name__}: {exc}"
    return "" if res.exit_code == 0 else f"exit {res.exit_code}: {res.output.strip()[:300]}"


async def run_jailed(
    argv: list[str], *, workspace: Workspace, settings: Settings, timeout: float,  # noqa: ASYNC109
    cwd: str = ".", env: dict[str, str] | None = None, limits: Limits | None = None,
    network: bool = False,
) -> CommandResult:
    """Run `argv` (no shell) in the task's jail; never raises for the command's own failure.

    Raises PathRefused (bad cwd or, in fallback mode, a path argument leaving the workspace),
    WorkspaceTooBig, or RuntimeError when the jail cannot be set up.
    """
    mode = sandbox_mode(settings)
    return await asyncio.to_thread(
        _run_sync, list(argv), workspace, settings, timeout, cwd, env, limits or Limits(),
        network, mode,
    )


def run_jailed_sync(
    argv: list[str], *, workspace: Workspace, settings: Settings, timeout: float,
    cwd: str = ".", env: dict[str, str] | None = None, limits: Limits | None = None,
) -> CommandResult:
    """`run_jailed` for callers without an event loop (the start-up self-test)."""
    return _run_sync(list(argv), workspace, settings, timeout, cwd, env, limits or Limits(),
                     False, sandbox_mode(settings))


def _sandbox_ids(settings: Settings) -> tuple[int, int] | None:
    """The uid/gid to drop to, or None when not root (then we already are unprivileged)."""
    if os.geteuid() != 0:
        return None
    if settings.sandbox_uid == 0 or settings.sandbox_gid == 0:
        raise RuntimeError("sandbox_uid/sandbox_gid must not be 0")
    return settings.sandbox_uid, settings.sandbox_gid


def _run_sync(
    argv: list[str], ws: Workspace, settings: Settings, timeout: float, cwd: str,
    env: dict[str, str] | None, limits: Limits, network: bool, mode: str,
) -> CommandResult:
    if not argv:
        raise ValueError("empty command")
    root = ws.root.resolve()
    rel_cwd = "." if cwd in ("", ".") else ws.relative(ws.resolve(cwd, must_exist=True))
    ids = _sandbox_ids(settings)
    prepare_workspace(root, uid=ids[0] if ids else None, gid=ids[1] if ids else None,
                      cap_bytes=limits.workspace_bytes)
    secrets = settings.secrets()
    start = time.perf_counter()
    if mode == "bwrap":
        cmd, cmd_env, preexec = _bwrap_command(argv, root, rel_cwd, env, limits, network, ids)
        fin = _execute(cmd, cmd_env, "/", preexec, timeout, limits)
    else:
        fin = _run_fallback(argv, root, rel_cwd, env, limits, ids, timeout)
    duration = (time.perf_counter() - start) * 1000
    text, truncated = fin.capture.text()
    notes = _notes(fin, timeout, limits)
    try:
        used = prepare_workspace(root, uid=None, gid=None, cap_bytes=limits.workspace_bytes)
    except WorkspaceTooBig as exc:
        used, notes = -1, notes + [str(exc)]
    output = redact(text + "".join(f"\n[{n}]" for n in notes), secrets)
    return CommandResult(fin.exit_code, output, fin.timed_out, fin.cpu_s, fin.peak_rss_kb,
                         duration, mode, fin.capture.total, truncated or fin.flooded, used)


def _notes(fin: Any, timeout: float, limits: Limits) -> list[str]:
    notes = []
    if fin.timed_out:
        notes.append(f"timed out after {timeout:g}s; the command and its children were killed")
    if fin.flooded:
        notes.append(f"output exceeded {limits.output_kill_bytes} bytes; the command was killed")
    return notes


def _execute(cmd: list[str], env: dict[str, str], cwd: str, preexec: Callable[[], None],
             timeout: float, limits: Limits) -> Any:
    try:
        return execute(cmd, env=env, cwd=cwd, preexec=preexec, timeout=timeout,
                       keep_bytes=limits.output_bytes, kill_after_bytes=limits.output_kill_bytes)
    except subprocess.SubprocessError as exc:
        raise RuntimeError(f"could not start the jail: {exc}") from exc


def _bwrap_command(
    argv: list[str], root: Path, rel_cwd: str, env: dict[str, str] | None, limits: Limits,
    network: bool, ids: tuple[int, int] | None,
) -> tuple[list[str], dict[str, str], Callable[[], None]]:
    """bubblewrap's argv, its (already scrubbed) environment and the child's preexec."""
    _, prefix = host_python()
    sources = {"ws": str(root)}
    if not prefix.startswith("/usr/"):
        sources["py"] = prefix
    stage = stage_dir_for(list(sources.values())) if ids else None
    src = {k: (f"{stage}/{k}" if stage else v) for k, v in sources.items()}
    uid, gid = ids or (os.getuid(), os.getgid())
    jenv = jail_env(JAIL_WORKSPACE, (root / ".venv").is_dir(), env)
    cmd = ["bwrap", "--unshare-all", "--unshare-user", "--disable-userns",
           "--uid", str(uid), "--gid", str(gid), "--cap-drop", "ALL", "--die-with-parent",
           "--new-session", "--clearenv", "--hostname", "sandbox", "--ro-bind", "/usr", "/usr"]
    if network:  # no tool asks for this; kept for a future, explicitly reviewed use
        cmd.append("--share-net")
    for name in ("bin", "sbin", "lib", "lib32", "lib64", "libx32"):
        host = f"/{name}"
        if os.path.islink(host):
            cmd += ["--symlink", os.readlink(host), host]
        elif os.path.isdir(host):
            cmd += ["--ro-bind", host, host]
    cmd += ["--proc", "/proc", "--dev", "/dev", "--size", str(limits.tmp_bytes),
            "--tmpfs", "/tmp", "--bind", src["ws"], JAIL_WORKSPACE]  # noqa: S108
    if "py" in src:
        cmd += ["--ro-bind", src["py"], prefix]
    for key, value in jenv.items():
        cmd += ["--setenv", key, value]
    cmd += ["--chdir", os.path.normpath(f"{JAIL_WORKSPACE}/{rel_cwd}"), "--", *argv]

    def preexec() -> None:
        if stage:
            stage_binds(stage, {k: sources[k] for k in sources})
        apply_rlimits(limits)
        if ids:
            drop_privileges(*ids)

    # bwrap itself gets the scrubbed env too: its pid-1 init keeps it in /proc/1/environ.
    return cmd, dict(jenv), preexec


def _run_fallback(
    argv: list[str], root: Path, rel_cwd: str, env: dict[str, str] | None, limits: Limits,
    ids: tuple[int, int] | None, timeout: float,
) -> Any:
    """The restricted subprocess: no namespaces, so argument paths are checked as well."""
    cwd = os.path.normpath(root / rel_cwd)
    cmd = fallback_argv(argv, root, JAIL_WORKSPACE, cwd)
    home = tempfile.mkdtemp(prefix="taskbench-home-")
    try:
        if ids:
            os.chown(home, *ids)
        jenv = jail_env(str(root), (root / ".venv").is_dir(), env, home=home)
        exe = shutil.which(cmd[0], path=jenv["PATH"]) or cmd[0]

        def preexec() -> None:
            apply_rlimits(limits)
            if ids:
                drop_privileges(*ids)

        return _execute([exe, *cmd[1:]], jenv, cwd, preexec, timeout, limits)
    finally:
        shutil.rmtree(home, ignore_errors=True)
