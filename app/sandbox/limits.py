"""Resource limits for one jailed command, and the workspace bookkeeping done before it runs.

`Limits` is applied with setrlimit in the forked child just before bubblewrap (or the fallback
program) is executed, so every process of the command's tree inherits it. RLIMIT_NPROC is
counted per real uid and ignored for root, which is why commands never run as root: the child
switches to the sandbox uid (see `app.sandbox.jail`) after setting the limits.
"""

from __future__ import annotations

import os
import resource
import stat
from dataclasses import dataclass
from pathlib import Path

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

    Host tools (write_file, git, uv) write as root; the jailed uid must be able to change those
    files. Symlinks are never followed (lchown, no descent), so a link planted by a command
    cannot make the host touch anything outside. No jailed process outlives its command (pid
    namespace), so nothing can swap a directory for a link while this walk runs.
    """
    total = 0
    stack = [str(root)]
    if uid is not None and gid is not None:
        _own(str(root), os.lstat(root), uid, gid)
    while stack:
        with os.scandir(stack.pop()) as entries:
            for entry in entries:
                st = entry.stat(follow_symlinks=False)
                total += st.st_blocks * 512 if st.st_blocks else st.st_size
                if uid is not None and gid is not None:
                    _own(entry.path, st, uid, gid)
                if stat.S_ISDIR(st.st_mode):
                    stack.append(entry.path)
    if total > cap_bytes:
        raise WorkspaceTooBig(
            f"workspace uses {total // MiB} MiB, over its cap of {cap_bytes // MiB} MiB; "
            "remove files before running more commands"
        )
    return total


def _own(path: str, st: os.stat_result, uid: int, gid: int) -> None:
    if st.st_uid != uid or st.st_gid != gid:
        os.chown(path, uid, gid, follow_symlinks=False)
