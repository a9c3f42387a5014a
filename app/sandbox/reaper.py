"""The worker as a child subreaper: orphans of a jailed command come to it and are reaped.

bubblewrap's inner process outlives the outer one for a moment when a command is killed; its
orphaned processes are re-parented to the nearest subreaper. Without one they go to PID 1,
which in a container is often a process that never reaps, and every zombie left there keeps
counting against the task uid's RLIMIT_NPROC. So the worker marks itself a subreaper and,
after each command, reaps the zombies that are its children and ran as a sandbox uid —
never a child another part of the worker waits for (those are registered in `_own`).
"""

from __future__ import annotations

import contextlib
import ctypes
import os
import threading

PR_SET_CHILD_SUBREAPER = 36
_own: set[int] = set()
_lock = threading.Lock()
_enabled = False


def become_subreaper() -> bool:
    """Mark this process a child subreaper (Linux); True when it is one."""
    global _enabled
    if _enabled:
        return True
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        _enabled = libc.prctl(PR_SET_CHILD_SUBREAPER, 1, 0, 0, 0) == 0
    except (OSError, AttributeError):
        _enabled = False
    return _enabled


def register(pid: int) -> None:
    """`pid` is waited for by its own caller: never reap it here."""
    with _lock:
        _own.add(pid)


def unregister(pid: int) -> None:
    with _lock:
        _own.discard(pid)


def reap(is_sandbox_uid: object) -> int:
    """Reap zombie children whose uid passes `is_sandbox_uid`; returns how many."""
    reaped = 0
    for pid in _zombie_children():
        with _lock:
            if pid in _own:
                continue
        if not callable(is_sandbox_uid) or not is_sandbox_uid(_uid_of(pid)):
            continue
        with contextlib.suppress(ChildProcessError):
            if os.waitpid(pid, os.WNOHANG)[0] == pid:
                reaped += 1
    return reaped


def _zombie_children() -> list[int]:
    """Our zombie children; cheap when there are none (one waitid call)."""
    try:
        peek = os.waitid(os.P_ALL, 0, os.WEXITED | os.WNOHANG | os.WNOWAIT)
    except ChildProcessError:
        return []
    if peek is None:
        return []
    me = str(os.getpid())
    found = []
    for name in os.listdir("/proc"):
        if not name.isdigit():
            continue
        try:
            with open(f"/proc/{name}/stat", "rb") as fh:
                fields = fh.read().rsplit(b")", 1)[1].split()
        except OSError:
            continue
        if fields[0] == b"Z" and fields[1].decode() == me:
            found.append(int(name))
    return found


def _uid_of(pid: int) -> int:
    try:
        with open(f"/proc/{pid}/status", "rb") as fh:
            for line in fh:
                if line.startswith(b"Uid:"):
                    return int(line.split()[1])
    except OSError:
        pass
    return -1
