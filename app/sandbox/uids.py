"""A host uid per workspace in use, so limits, file ownership and signals are per task.

    uid_for(root, settings) -> (uid, gid)   gid = uid; None when the worker is not root
    release(root)                           the task ended: its uid may go to another

The uids come from `settings.sandbox_uid_base` … `+ sandbox_uid_count`. A lock file per uid
under `settings.sandbox_uid_lock_dir` is host-wide: its flock is held by the worker process
running the task (shared, so tasks sharing one workspace, a parent and its subtasks, share
its uid) and it holds the workspace's real path. A process that dies drops its locks with
it, so a crashed worker never leaks uids. The first uid tried is derived from the path, so a
resumed task usually gets its old uid back and its files need no re-owning.
"""

from __future__ import annotations

import fcntl
import os
import stat
import threading
import zlib
from pathlib import Path

from app.core.config import Settings
from app.sandbox.probe import SandboxUnavailable

_held: dict[str, tuple[int, int]] = {}  # real path -> (uid, lock fd)
_lock = threading.Lock()


def uid_for(root: Path, settings: Settings) -> tuple[int, int] | None:
    """The (uid, gid) commands in the workspace `root` run as; allocated on first use."""
    if os.geteuid() != 0:
        return None  # already unprivileged: no uid to switch to
    if settings.sandbox_uid_count <= 0:
        if settings.sandbox_uid == 0 or settings.sandbox_gid == 0:
            raise RuntimeError("sandbox_uid/sandbox_gid must not be 0")
        return settings.sandbox_uid, settings.sandbox_gid
    if settings.sandbox_uid_base <= 0:
        raise RuntimeError("sandbox_uid_base must be above 0")
    key = os.path.realpath(root)
    with _lock:
        if key not in _held:
            _held[key] = _allocate(key, settings)
        uid = _held[key][0]
    return uid, uid


def release(root: Path) -> None:
    """Give the workspace's uid back (its task ended or paused in this process).

    When nobody else shares it, the workspace root goes back to root (0700) first, so that
    whichever task gets this uid next cannot enter a workspace that is no longer its own; the
    next command here hands everything over again."""
    key = os.path.realpath(root)
    with _lock:
        held = _held.pop(key, None)
    if not held:
        return
    try:
        fcntl.flock(held[1], fcntl.LOCK_EX | fcntl.LOCK_NB)  # only if no other holder
        st = os.lstat(key)
        if st.st_uid == held[0] and stat.S_ISDIR(st.st_mode):
            os.chown(key, 0, 0, follow_symlinks=False)
            os.chmod(key, 0o700, follow_symlinks=False)
    except (BlockingIOError, FileNotFoundError):
        pass
    finally:
        os.close(held[1])


def is_sandbox_uid(uid: int, settings: Settings) -> bool:
    """Whether `uid` is one jailed commands run as (the range or the single sandbox uid)."""
    base = settings.sandbox_uid_base
    in_range = settings.sandbox_uid_count > 0 and base <= uid < base + settings.sandbox_uid_count
    return in_range or uid == settings.sandbox_uid


def held_count() -> int:
    with _lock:
        return len(_held)


def _allocate(key: str, settings: Settings) -> tuple[int, int]:
    lock_dir = Path(settings.sandbox_uid_lock_dir)
    lock_dir.mkdir(mode=0o700, parents=True, exist_ok=True)
    count, base = settings.sandbox_uid_count, settings.sandbox_uid_base
    start = zlib.crc32(key.encode()) % count
    for i in range(count):
        uid = base + (start + i) % count
        fd = os.open(lock_dir / str(uid), os.O_RDWR | os.O_CREAT | os.O_NOFOLLOW | os.O_CLOEXEC,
                     0o600)
        if _claim(fd, key):
            return uid, fd
        os.close(fd)
    raise SandboxUnavailable(f"all {count} sandbox uids are in use")


def _claim(fd: int, key: str) -> bool:
    """Take the uid behind `fd` for `key`: free, or already held for the same workspace."""
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        # held: join it only if it is held for this very workspace (content changes under EX only)
        if _owner(fd) != key:
            return False
        try:
            fcntl.flock(fd, fcntl.LOCK_SH | fcntl.LOCK_NB)
        except BlockingIOError:
            return False
        return _owner(fd) == key
    os.ftruncate(fd, 0)
    os.pwrite(fd, key.encode(), 0)
    fcntl.flock(fd, fcntl.LOCK_SH)  # not atomic: check nobody took it in between
    return _owner(fd) == key


def _owner(fd: int) -> str:
    return os.pread(fd, 8192, 0).decode(errors="replace")
