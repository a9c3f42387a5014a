"""The jailed command runner: every command an agent runs goes through `run_jailed`.

    run_jailed(argv, workspace=…, settings=…, timeout=…)
    ├── sandbox_mode        the probe (probe.py): jail, "none", or SandboxUnavailable (refuse)
    ├── uid_for/hand_over   the task's own uid (uids.py) owns the workspace (ownership.py)
    ├── DiskGuard           the disk cap, checked before and WHILE it runs (diskcap.py)
    ├── cgroup              memory and pids across the command's tree (cgroups.py)
    ├── mode "bwrap"        bubblewrap, unprivileged, in new user/pid/net/ipc/uts/cgroup/mount
    │                       namespaces; only /usr, the interpreter prefix (read-only) and the
    │                       workspace (read-write, at /workspace) are visible
    └── mode "none"         restricted subprocess: same limits, env and uid, plus argument path
                            checks; used only where bubblewrap cannot run, and said loudly

The child joins the command's cgroup, sets its rlimits and drops to the task's uid before exec
(never root: a root-mapped sandbox defeats RLIMIT_NPROC), so the limits cover the whole tree.
Afterwards the group is killed and removed and orphaned zombies are reaped (reaper.py).
"""

from __future__ import annotations

import asyncio
import itertools
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
from app.sandbox import cgroups, diskcap, fs, reaper
from app.sandbox.capture import Finished, execute
from app.sandbox.cgroups import CommandGroup
from app.sandbox.envpolicy import fallback_argv, jail_env, redact
from app.sandbox.hostgit import host_git_env
from app.sandbox.limits import Limits, MiB, apply_rlimits, drop_privileges
from app.sandbox.mounts import stage_binds, stage_dir_for
from app.sandbox.ownership import hand_over
from app.sandbox.probe import SandboxUnavailable, bwrap_binary, forget, resolve_mode
from app.sandbox.uids import is_sandbox_uid, uid_for
from app.sandbox.uids import release as release_uid
from app.sandbox.wheels import BASE_IN_JAIL, layers_dir
from app.sandbox.workspace import Workspace

__all__ = [
    "CommandResult", "JailedProcess", "SandboxUnavailable", "host_git_env", "host_python",
    "jailed_process", "run_jailed", "run_jailed_sync", "sandbox_mode",
]
log = logging.getLogger(__name__)
JAIL_WORKSPACE = "/workspace"
_serial = itertools.count()
VENV = ".venv"  # the task's own venv, active unless the agent deactivates it


def _base(settings: Settings) -> str | None:
    """The shared venv layers' folder, when there is one to bind."""
    folder = layers_dir(settings)
    return str(folder) if folder.is_dir() else None


def active_venv(root: Path, venv: str | None) -> str | None:
    """`venv` when it is a folder in the workspace now, else None."""
    return venv if venv and fs.kind(root, venv) == "dir" else None


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
    cgroup_peak_bytes: int = 0  # memory of the whole tree at its peak (0: no cgroup)
    disk_cap_hit: bool = False

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
    """"bwrap" or "none"; SandboxUnavailable when the jail is wanted but cannot run now."""
    return resolve_mode(settings, lambda: _probe_bwrap(settings))


def _probe_bwrap(settings: Settings) -> str:
    """'' if `true` runs under bubblewrap here, else why not."""
    if not bwrap_binary(settings):
        return "bwrap is not installed"
    with tempfile.TemporaryDirectory(prefix="taskbench-probe-") as tmp:
        try:
            res = _run_sync(["true"], Workspace(Path(tmp)), settings, 10.0, ".", None,
                            Limits(), False, "bwrap")
        except Exception as exc:  # noqa: BLE001 - any failure means "bwrap unusable"
            return f"{type(exc).__name__}: {exc}"
        finally:
            release_uid(Path(tmp))
    return "" if res.exit_code == 0 else f"exit {res.exit_code}: {res.output.strip()[:300]}"


async def run_jailed(
    argv: list[str], *, workspace: Workspace, settings: Settings, timeout: float,  # noqa: ASYNC109
    cwd: str = ".", env: dict[str, str] | None = None, limits: Limits | None = None,
    network: bool = False, venv: str | None = VENV,
) -> CommandResult:
    """Run `argv` (no shell) in the task's jail; never raises for the command's own failure.

    Raises PathRefused (bad cwd or, in fallback mode, a path argument leaving the workspace),
    WorkspaceTooBig, or SandboxUnavailable when the jail is wanted but cannot run now (the
    command did not run; the task should be retried later, never run unjailed).
    """
    mode = sandbox_mode(settings)
    return await asyncio.to_thread(
        _run_sync, list(argv), workspace, settings, timeout, cwd, env, limits or Limits(),
        network, mode, venv,
    )


def run_jailed_sync(
    argv: list[str], *, workspace: Workspace, settings: Settings, timeout: float,
    cwd: str = ".", env: dict[str, str] | None = None, limits: Limits | None = None,
) -> CommandResult:
    """`run_jailed` for callers without an event loop (the start-up self-test)."""
    return _run_sync(list(argv), workspace, settings, timeout, cwd, env, limits or Limits(),
                     False, sandbox_mode(settings))


@dataclass
class JailedProcess:
    """How to start one long-lived process in the task's jail (e.g. an MCP server over stdio):
    pass `argv`, `env` and `preexec` to the spawning call with cwd "/", and call `close` once
    it has exited or been killed (it kills whatever is left of its tree and reaps it)."""

    argv: list[str]
    env: dict[str, str]
    preexec: Callable[[], None]
    group: CommandGroup | None
    settings: Settings

    def close(self) -> None:
        if self.group:
            self.group.close()
            self.group = None
        reaper.reap(lambda uid: is_sandbox_uid(uid, self.settings))


def jailed_process(
    argv: list[str], *, workspace: Workspace, settings: Settings,
    env: dict[str, str] | None = None, limits: Limits | None = None,
) -> JailedProcess:
    """The bubblewrap command for a process that outlives one tool call, with the isolation of
    `run_jailed` (no network, only the workspace writable, the task's uid, rlimits and cgroup).

    Only under bubblewrap: SandboxUnavailable in the restricted-subprocess mode, which cannot
    keep a long-running program of the agent's choosing out of the host.
    """
    if not argv:
        raise ValueError("empty command")
    if sandbox_mode(settings) != "bwrap":
        raise SandboxUnavailable("a long-lived process runs only under bubblewrap, which is "
                                 "not in use here")
    limits = limits or Limits()
    root = workspace.root.resolve()
    ids = uid_for(root, settings)
    if ids:
        hand_over(root, *ids)
    group = cgroups.detect(settings).create(f"proc-{os.getpid()}-{next(_serial)}", limits)
    cmd, cmd_env, preexec = _bwrap_command(list(argv), root, ".", env, limits, False, ids, group,
                                           base=_base(settings))
    cmd[0] = bwrap_binary(settings) or cmd[0]
    return JailedProcess(cmd, cmd_env, preexec, group, settings)


def _run_sync(
    argv: list[str], ws: Workspace, settings: Settings, timeout: float, cwd: str,
    env: dict[str, str] | None, limits: Limits, network: bool, mode: str,
    venv: str | None = VENV,
) -> CommandResult:
    if not argv:
        raise ValueError("empty command")
    root, rel_cwd, ids, disk = prepare(ws, settings, cwd, limits)
    start = time.perf_counter()
    group = cgroups.detect(settings).create(f"cmd-{os.getpid()}-{next(_serial)}", limits)
    try:
        if mode == "bwrap":
            fin = _run_bwrap(argv, root, rel_cwd, env, limits, network, ids, settings, group,
                             disk.check, timeout, venv)
        else:
            fin = _run_fallback(argv, root, rel_cwd, env, limits, ids, timeout, group,
                                disk.check, venv)
    finally:
        figures = group.figures() if group else {}
        if group:
            group.close()
        reaper.reap(lambda uid: is_sandbox_uid(uid, settings))
    return command_result(fin, disk, start, mode, timeout, limits, settings, figures)


def prepare(ws: Workspace, settings: Settings, cwd: str,
            limits: Limits) -> tuple[Path, str, tuple[int, int] | None, diskcap.DiskGuard]:
    """Before a command: (root, cwd relative to it, the task's ids, the disk cap's guard).

    The workspace is handed to the task's uid and checked against its cap (WorkspaceTooBig);
    a cwd outside it or missing raises PathRefused / FileNotFoundError."""
    root = ws.root.resolve()
    rel_cwd = "." if cwd in ("", ".") else ws.relative(ws.resolve(cwd, must_exist=True))
    ids = uid_for(root, settings)
    if ids:
        free = diskcap.free_bytes(str(root))
        size = hand_over(root, *ids)
        if size is not None:
            diskcap.remember(str(root), size, free)
    disk = diskcap.DiskGuard(root, limits.workspace_bytes)
    disk.before()
    return root, rel_cwd, ids, disk


def command_result(fin: Finished, disk: diskcap.DiskGuard, start: float, mode: str,
                   timeout: float, limits: Limits, settings: Settings,
                   figures: dict[str, int | bool]) -> CommandResult:
    """What the model and the event log get from one finished command (secrets redacted)."""
    duration = (time.perf_counter() - start) * 1000
    text, truncated = fin.capture.text()
    notes = _notes(fin, timeout, limits, bool(figures.get("oom")))
    output = redact(text + "".join(f"\n[{n}]" for n in notes), settings.secrets())
    return CommandResult(fin.exit_code, output, fin.timed_out, fin.cpu_s, fin.peak_rss_kb,
                         duration, mode, fin.capture.total, truncated or fin.flooded,
                         disk.after(), int(figures.get("cgroup_peak_bytes", 0)),
                         bool(fin.stopped))


def _notes(fin: Finished, timeout: float, limits: Limits, oom: bool) -> list[str]:
    notes = [fin.stopped] if fin.stopped else []
    if fin.note:
        notes.append(fin.note)
    if oom:
        notes.append(f"the command's processes went over {limits.memory_bytes // MiB} MiB of "
                     "memory together; the kernel killed some of them")
    if fin.timed_out:
        notes.append(f"timed out after {timeout:g}s; the command and its children were killed")
    if fin.flooded:
        notes.append(f"output exceeded {limits.output_kill_bytes} bytes; the command was killed")
    return notes


def _execute(cmd: list[str], env: dict[str, str], cwd: str, preexec: Callable[[], None],
             timeout: float, limits: Limits, guard: Callable[[], str],
             pass_fds: tuple[int, ...] = ()) -> Any:
    try:
        return execute(cmd, env=env, cwd=cwd, preexec=preexec, timeout=timeout,
                       keep_bytes=limits.output_bytes, kill_after_bytes=limits.output_kill_bytes,
                       guard=guard, pass_fds=pass_fds)
    except (subprocess.SubprocessError, OSError) as exc:
        forget(f"could not start the jail: {exc}")
        raise SandboxUnavailable(f"could not start the jail: {exc}") from exc


def _run_bwrap(
    argv: list[str], root: Path, rel_cwd: str, env: dict[str, str] | None, limits: Limits,
    network: bool, ids: tuple[int, int] | None, settings: Settings,
    group: CommandGroup | None, guard: Callable[[], str], timeout: float, venv: str | None,
) -> Any:
    """Run under bubblewrap; SandboxUnavailable when bubblewrap never started the command."""
    info_r, info_w = os.pipe()
    try:
        cmd, cmd_env, preexec = _bwrap_command(argv, root, rel_cwd, env, limits, network, ids,
                                               group, venv, _base(settings))
        cmd[0] = bwrap_binary(settings) or cmd[0]
        cmd[1:1] = ["--info-fd", str(info_w)]
        fin = _execute(cmd, cmd_env, "/", preexec, timeout, limits, guard, (info_w,))
        os.close(info_w)
        info_w = -1
        started = b"child-pid" in os.read(info_r, 4096)
    finally:
        os.close(info_r)
        if info_w >= 0:
            os.close(info_w)
    if not started:
        why = fin.capture.text()[0].strip()[:300] or f"exit {fin.exit_code}"
        forget(why)
        raise SandboxUnavailable(f"bubblewrap could not start the command: {why}")
    return fin


def _bwrap_command(
    argv: list[str], root: Path, rel_cwd: str, env: dict[str, str] | None, limits: Limits,
    network: bool, ids: tuple[int, int] | None, group: CommandGroup | None = None,
    venv: str | None = VENV, base: str | None = None,
) -> tuple[list[str], dict[str, str], Callable[[], None]]:
    """bubblewrap's argv, its (already scrubbed) environment and the child's preexec; `base`
    is the folder of shared venv layers (app.sandbox.wheels), bound read-only."""
    _, prefix = host_python()
    sources = {"ws": str(root)}
    if not prefix.startswith("/usr/"):
        sources["py"] = prefix
    if base:
        sources["base"] = base
    stage = stage_dir_for(list(sources.values())) if ids else None
    src = {k: (f"{stage}/{k}" if stage else v) for k, v in sources.items()}
    uid, gid = ids or (os.getuid(), os.getgid())
    jenv = jail_env(JAIL_WORKSPACE, active_venv(root, venv), env)
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
    if "base" in src:
        cmd += ["--ro-bind", src["base"], BASE_IN_JAIL]
    for key, value in jenv.items():
        cmd += ["--setenv", key, value]
    cmd += ["--chdir", os.path.normpath(f"{JAIL_WORKSPACE}/{rel_cwd}"), "--", *argv]

    # bwrap itself gets the scrubbed env too: its pid-1 init keeps it in /proc/1/environ.
    return cmd, dict(jenv), _child_setup(group, limits, ids, stage, sources)


def _child_setup(
    group: CommandGroup | None, limits: Limits, ids: tuple[int, int] | None,
    stage: str | None = None, sources: dict[str, str] | None = None,
) -> Callable[[], None]:
    """What the forked child does before exec, in this order: join the command's cgroup and
    stage the binds (both need root), set the rlimits, then drop to the task's uid for good."""

    def preexec() -> None:
        if group:
            group.join()
        if stage and sources:
            stage_binds(stage, sources)
        apply_rlimits(limits)
        if ids:
            drop_privileges(*ids)

    return preexec


def _run_fallback(
    argv: list[str], root: Path, rel_cwd: str, env: dict[str, str] | None, limits: Limits,
    ids: tuple[int, int] | None, timeout: float, group: CommandGroup | None,
    guard: Callable[[], str], venv: str | None,
) -> Any:
    """The restricted subprocess: no namespaces, so argument paths are checked as well."""
    cwd = os.path.normpath(root / rel_cwd)
    cmd = fallback_argv(argv, root, JAIL_WORKSPACE, cwd)
    home = tempfile.mkdtemp(prefix="taskbench-home-")
    try:
        if ids:
            os.chown(home, *ids)
        jenv = jail_env(str(root), active_venv(root, venv), env, home=home)
        exe = shutil.which(cmd[0], path=jenv["PATH"]) or cmd[0]
        return _execute([exe, *cmd[1:]], jenv, cwd, _child_setup(group, limits, ids), timeout,
                        limits, guard)
    finally:
        shutil.rmtree(home, ignore_errors=True)
