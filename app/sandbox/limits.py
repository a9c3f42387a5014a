"""Resource limits for one jailed command, and the workspace bookkeeping done before it runs.

`Limits` is applied with setrlimit in the forked child just before bubblewrap (or the fallback
program) is executed, so every process of the command's tree inherits it. RLIMIT_NPROC is
counted per real uid and ignored for root, which is why commands never run as root: the child
switches to the sandbox uid (see `app.sandbox.jail`) after setting the limits.
"""

from __future__ import annotations

import os
import resource
from dataclasses import dataclass
from pathlib import Path

from app.sandbox import fs

MiB = 1024 * 1024


@dataclass(frozen=True)
class Limits:
    """Ceilings for one command; the defaults suit a test suite or a small build."""

    cpu_s: int = 60  # soft: SIGXCPU; the hard limit (+5 s) then SIGKILLs
    address_space_bytes: int = 2048 * MiB
    nproc: int = 128  # per sandbox uid, host-wide: a fork bomb stops here
    file_size_bytes: int = 256 * MiB
    open_files: int = 256
    workspace_bytes: int = 2048 * MiB
    output_bytes: int = 1 * MiB  # what is kept (head + tail)
    output_kill_bytes: int = 64 * MiB  # a command printing more than this is killed
    tmp_bytes: int = 256 * MiB  # size of the private /tmp (tmpfs)

    def rlimits(self) -> list[tuple[int, int, int]]:
        """(resource, soft, hard) triples, CPU soft below hard so the process hears SIGXCPU."""
        return [
            (resource.RLIMIT_CPU, self.cpu_s, self.cpu_s + 5),
            (resource.RLIMIT_AS, self.address_space_bytes, self.address_space_bytes),
            (resource.RLIMIT_NPROC, self.nproc, self.nproc),
            (resource.RLIMIT_FSIZE, self.file_size_bytes, self.file_size_bytes),
            (resource.RLIMIT_NOFILE, self.open_files, self.open_files),
            (resource.RLIMIT_CORE, 0, 0),
        ]


def apply_rlimits(limits: Limits) -> None:
    """Set every limit on the calling process (runs in the child between fork and exec)."""
    for res, soft, hard in limits.rlimits():
        _, cur_hard = resource.getrlimit(res)
        if cur_hard != resource.RLIM_INFINITY:
            # An unprivileged caller cannot raise a hard limit; never ask for more than it has.
            hard = min(hard, cur_hard)
            soft = min(soft, hard)
        resource.setrlimit(res, (soft, hard))


def drop_privileges(uid: int, gid: int) -> None:
    """Become `uid`/`gid` for good (no supplementary groups); no-op when not root."""
    if os.geteuid() != 0:
        return
    os.setgroups([])
    os.setresgid(gid, gid, gid)
    os.setresuid(uid, uid, uid)


class WorkspaceTooBig(RuntimeError):
    """The workspace is over its size cap; commands are refused until files are removed."""


def prepare_workspace(root: Path, *, uid: int | None, gid: int | None, cap_bytes: int) -> int:
    """Measure the workspace and hand it to the sandbox uid; returns its size in bytes.

    Host tools (git, uv) write as root; the jailed uid must be able to change those files. The
    walk goes through app.sandbox.fs (directories entered by descriptor, never through a link)
    and ownership changes with lchownat on the entry itself; a file with several hard links is
    never handed over, since its other names may live outside the workspace (a cache).
    """
    total = 0
    if uid is not None and gid is not None:
        st = os.lstat(root)
        if (st.st_uid, st.st_gid) != (uid, gid):
            os.chown(root, uid, gid, follow_symlinks=False)
    for entry in fs.walk(root):
        total += entry.blocks * 512 if entry.blocks else entry.size
        if uid is None or gid is None or (entry.uid, entry.gid) == (uid, gid):
            continue
        if not (entry.kind == "file" and entry.nlink > 1):
            os.chown(entry.name, uid, gid, dir_fd=entry.dir_fd, follow_symlinks=False)
    if total > cap_bytes:
        raise WorkspaceTooBig(
            f"workspace uses {total // MiB} MiB, over its cap of {cap_bytes // MiB} MiB; "
            "remove files before running more commands"
        )
    return total
