"""The workspace disk cap, held while a command runs and without a full walk per command.

    DiskGuard(root, cap)   .before()  refuses (WorkspaceTooBig) a workspace already over cap
                           .check()   during the command, every ~0.25 s: a reason to kill it
                           .after()   the size to report

How it stays cheap: the exact size (a walk that never follows links) is known per workspace
from the last walk. During and after a command the growth is estimated from the filesystem's
free space (statvfs: one system call), which can only over-estimate this command's growth
while nobody else deletes. Only when the estimate crosses the cap is the workspace walked
again, and only when the walk agrees is the command killed. A walk also happens every
`EXACT_EVERY` commands or `EXACT_AFTER_S` seconds, which bounds what concurrent deletes by
others could hide. RLIMIT_FSIZE still caps any single file, and /tmp is a sized tmpfs.
"""

from __future__ import annotations

import os
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from app.sandbox.limits import MiB, WorkspaceTooBig
from app.sandbox.ownership import walk

EXACT_EVERY = 20
EXACT_AFTER_S = 60.0


@dataclass
class _Known:
    bytes: int
    free: int  # the filesystem's free bytes when `bytes` was true
    commands: int
    at: float


_known: dict[str, _Known] = {}
_lock = threading.Lock()


def free_bytes(path: str) -> int:
    """Free bytes of the filesystem holding `path` (one statvfs)."""
    return _free(path)


def _free(path: str) -> int:
    st = os.statvfs(path)
    return st.f_bfree * st.f_frsize


def measure(root: str) -> int:
    """Exact bytes under `root` now, remembered as the workspace's known size."""
    free = _free(root)
    size = walk(root, None, None, skip=())
    remember(root, size, free)
    return size


def remember(root: str, size: int, free: int) -> None:
    """`size` is exact now (e.g. from ownership's full walk)."""
    with _lock:
        _known[root] = _Known(size, free, 0, time.monotonic())


class DiskGuard:
    """The cap of one workspace during one command."""

    def __init__(self, root: Path, cap: int) -> None:
        self.root = str(root)
        self.cap = cap
        self.base = 0
        self.free0 = 0
        self.exceeded = ""

    def before(self) -> int:
        with _lock:
            known = _known.get(self.root)
        self.free0 = _free(self.root)
        # what the host (or anyone) wrote since the last command counts as this workspace's
        guess = known.bytes + max(0, known.free - self.free0) if known else 0
        stale = (known is None or known.commands >= EXACT_EVERY
                 or time.monotonic() - known.at > EXACT_AFTER_S or guess > self.cap)
        if stale:
            self.base = measure(self.root)
            self.free0 = _free(self.root)
        else:
            self.base = guess
        if self.base > self.cap:
            raise WorkspaceTooBig(
                f"workspace uses {self.base // MiB} MiB, over its cap of {self.cap // MiB} "
                "MiB; remove files before running more commands")
        return self.base

    def estimate(self) -> int:
        return self.base + max(0, self.free0 - _free(self.root))

    def check(self) -> str:
        """'' while under the cap, else why the command must be killed now."""
        if self.exceeded or self.estimate() <= self.cap:
            return self.exceeded
        exact = measure(self.root)
        self.base, self.free0 = exact, _free(self.root)  # re-based: no walk again until it grows
        if exact > self.cap:
            self.exceeded = (f"the workspace grew past its cap of {self.cap // MiB} MiB while "
                             "the command ran; the command was killed")
        return self.exceeded

    def after(self) -> int:
        """The workspace's size after the command (exact when over the cap)."""
        free = _free(self.root)
        size = self.base + max(0, self.free0 - free)
        if size > self.cap:
            return measure(self.root)
        with _lock:
            known = _known.get(self.root)
            commands = known.commands + 1 if known else 0
            at = known.at if known else time.monotonic()
            _known[self.root] = _Known(size, free, commands, at)
        return size
