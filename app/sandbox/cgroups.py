"""A cgroup per command, so memory and process counts hold across the command's whole tree.

    detect(settings) -> Backend      which hierarchy works here (cached per process):
        v2    the unified hierarchy with memory+pids delegated to us: memory.max,
              memory.swap.max=0, pids.max, io.weight 50 where the io controller is there;
              cgroup.kill at the end
        v1    writable legacy memory and pids hierarchies: memory.limit_in_bytes
              (+memsw), pids.max; every process SIGKILLed at the end
        none  not writable (an unprivileged worker, a container without delegation):
              rlimits only (RLIMIT_AS per process, RLIMIT_NPROC per task uid), and /health
              says so
    Backend.create(name, limits) -> CommandGroup   made before the command starts
    CommandGroup.join()          in the forked child, before bubblewrap: the tree inherits it
    CommandGroup.close()         kill what is left, read the figures, remove the group

Groups live under `<our own cgroup>/taskbench/` of each hierarchy, so a worker never touches
anything it did not make.
"""

from __future__ import annotations

import contextlib
import logging
import os
import signal
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path

from app.core.config import Settings
from app.sandbox.limits import Limits

log = logging.getLogger(__name__)
PARENT = "taskbench"
_cache: dict[str, Backend] = {}
_lock = threading.Lock()


@dataclass
class CommandGroup:
    """One command's cgroup directories (one for v2, one per controller for v1)."""

    version: int
    dirs: list[str]
    memory_dir: str

    def join(self) -> None:
        """Move the calling process in (runs between fork and exec, so no logging)."""
        pid = str(os.getpid()).encode()
        for d in self.dirs:
            fd = os.open(f"{d}/cgroup.procs", os.O_WRONLY)
            try:
                os.write(fd, pid)
            finally:
                os.close(fd)

    def figures(self) -> dict[str, int | bool]:
        """Peak memory of the tree, and how often the kernel's OOM killer fired in it
        (`oom_kills`; `oom` when it ever did)."""
        peak_file = "memory.peak" if self.version == 2 else "memory.max_usage_in_bytes"
        peak = _read_int(f"{self.memory_dir}/{peak_file}")
        text = _read(f"{self.memory_dir}/memory.events" if self.version == 2
                     else f"{self.memory_dir}/memory.oom_control")
        kills = sum(int(line.split()[1]) for line in text.splitlines()
                    if len(line.split()) == 2 and line.split()[0] == "oom_kill"
                    and line.split()[1].isdigit())
        return {"cgroup_peak_bytes": peak, "oom": kills > 0, "oom_kills": kills}

    def close(self) -> None:
        """SIGKILL whatever is still inside, then remove the directories."""
        for d in self.dirs:
            _empty(d, self.version)
            for _ in range(50):
                try:
                    os.rmdir(d)
                    break
                except FileNotFoundError:
                    break
                except OSError:
                    time.sleep(0.01)  # the killed processes are still exiting
            else:
                log.warning("could not remove cgroup %s", d)


@dataclass
class Backend:
    """Where command groups are made, and what /health says about it."""

    version: int  # 2, 1, or 0 for none
    parents: dict[str, str] = field(default_factory=dict)  # controller -> parent dir
    reason: str = ""

    def create(self, name: str, limits: Limits) -> CommandGroup | None:
        if not self.version:
            return None
        if self.version == 2:
            d = f"{self.parents['unified']}/{name}"
            os.mkdir(d)
            _write(f"{d}/memory.max", limits.memory_bytes)
            _write(f"{d}/memory.swap.max", 0, optional=True)
            _write(f"{d}/pids.max", limits.pids)
            _write(f"{d}/io.weight", "default 50", optional=True)
            return CommandGroup(2, [d], d)
        mem, pids = f"{self.parents['memory']}/{name}", f"{self.parents['pids']}/{name}"
        os.mkdir(mem)
        os.mkdir(pids)
        _write(f"{mem}/memory.limit_in_bytes", limits.memory_bytes)
        _write(f"{mem}/memory.memsw.limit_in_bytes", limits.memory_bytes, optional=True)
        _write(f"{pids}/pids.max", limits.pids)
        return CommandGroup(1, [mem, pids], mem)

    def status(self) -> dict[str, object]:
        if self.version:
            return {"cgroup": f"v{self.version}", "memory_cap": "per command tree",
                    "pids_cap": "per command tree"}
        return {"cgroup": "none", "memory_cap": "per process only (RLIMIT_AS)",
                "pids_cap": "per task uid only (RLIMIT_NPROC)", "cgroup_error": self.reason}


def detect(settings: Settings) -> Backend:
    """The working backend here (cached); never raises."""
    key = settings.sandbox_cgroup
    with _lock:
        if key not in _cache:
            _cache[key] = _detect(settings)
            b = _cache[key]
            if not b.version:
                log.warning("SANDBOX LIMITS DEGRADED: no writable cgroup (%s); memory is "
                            "capped per process and processes per task uid only", b.reason)
        return _cache[key]


def reset() -> None:
    with _lock:
        _cache.clear()


def _detect(settings: Settings) -> Backend:
    if settings.sandbox_cgroup.strip().lower() == "off":
        return Backend(0, reason="TASKBENCH_SANDBOX_CGROUP=off")
    if os.geteuid() != 0:
        return Backend(0, reason="the worker is not root")
    mounts, own = _mounts(), _own_paths()
    errors = []
    for attempt in (_try_v2, _try_v1):
        try:
            return attempt(mounts, own)
        except OSError as exc:
            errors.append(str(exc))
    return Backend(0, reason="; ".join(errors))


def _try_v2(mounts: dict[str, str], own: dict[str, str]) -> Backend:
    if "unified" not in mounts or "" not in own:
        raise OSError("no cgroup2 mount")
    mine = mounts["unified"] + own[""].rstrip("/")
    available = set(_read(f"{mine}/cgroup.controllers").split())
    if not {"memory", "pids"} <= available:
        raise OSError(f"cgroup2 at {mine} lacks memory/pids (has {sorted(available)})")
    parent = f"{mine}/{PARENT}"
    os.makedirs(parent, exist_ok=True)
    # our own cgroup must hand the controllers down; the group we made holds no process
    _write(f"{mine}/cgroup.subtree_control", "+memory +pids")
    _write(f"{parent}/cgroup.subtree_control", "+memory +pids")
    _sweep_stale(parent)
    if "io" in available:  # a lower I/O weight than the worker's own, where the kernel has it
        _write(f"{mine}/cgroup.subtree_control", "+io", optional=True)
        _write(f"{parent}/cgroup.subtree_control", "+io", optional=True)
    return Backend(2, {"unified": parent})


def _try_v1(mounts: dict[str, str], own: dict[str, str]) -> Backend:
    parents: dict[str, str] = {}
    for ctl in ("memory", "pids"):
        if ctl not in mounts or ctl not in own:
            raise OSError(f"no cgroup v1 {ctl} hierarchy")
        parent = f"{mounts[ctl]}{own[ctl].rstrip('/')}/{PARENT}"
        os.makedirs(parent, exist_ok=True)
        probe = f"{parent}/probe-{os.getpid()}"
        os.mkdir(probe)
        os.rmdir(probe)
        _sweep_stale(parent)
        parents[ctl] = parent
    return Backend(1, parents)


def _sweep_stale(parent: str) -> None:
    """Remove the groups of workers that died mid-command (cmd-<pid>-<n>, that pid gone)."""
    for name in os.listdir(parent):
        parts = name.split("-")
        mine = len(parts) == 3 and parts[0] == "cmd" and parts[1].isdigit()
        if mine and not os.path.exists(f"/proc/{parts[1]}"):
            d = f"{parent}/{name}"
            _empty(d, 2 if os.path.exists(f"{d}/cgroup.kill") else 1)
            with contextlib.suppress(OSError):
                os.rmdir(d)


def _mounts() -> dict[str, str]:
    """controller (or "unified") -> mount point, from /proc/self/mountinfo."""
    found: dict[str, str] = {}
    for line in _read("/proc/self/mountinfo").splitlines():
        pre, _, post = line.partition(" - ")
        fields, post_f = pre.split(), post.split()
        if len(post_f) < 3:
            continue
        if post_f[0] == "cgroup2":
            found.setdefault("unified", fields[4])
        elif post_f[0] == "cgroup":
            for opt in post_f[2].split(","):
                if opt in ("memory", "pids"):
                    found.setdefault(opt, fields[4])
    return found


def _own_paths() -> dict[str, str]:
    """controller ("" for v2) -> this process's cgroup path, from /proc/self/cgroup."""
    out: dict[str, str] = {}
    for line in _read("/proc/self/cgroup").splitlines():
        _, ctls, path = line.split(":", 2)
        for ctl in ctls.split(",") if ctls else [""]:
            out[ctl] = path
    return out


def _empty(d: str, version: int) -> None:
    if version == 2:
        with contextlib.suppress(OSError):
            _write(f"{d}/cgroup.kill", 1)
        return
    for _ in range(20):  # a fork racing the kill shows up on the next read
        pids = [int(p) for p in _read(f"{d}/cgroup.procs").split()]
        if not pids:
            return
        for pid in pids:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
        time.sleep(0.005)


def _read(path: str) -> str:
    try:
        return Path(path).read_text()
    except OSError:
        return ""


def _read_int(path: str) -> int:
    text = _read(path).strip()
    return int(text) if text.isdigit() else 0


def _write(path: str, value: object, *, optional: bool = False) -> None:
    try:
        Path(path).write_text(str(value))
    except OSError:
        if not optional:
            raise
