"""Resource limits for one jailed command, and the workspace bookkeeping done before it runs.

`Limits` is applied with setrlimit in the forked child just before bubblewrap (or the fallback
program) is executed, so every process of the command's tree inherits it. RLIMIT_NPROC is
counted per real uid and ignored for root, which is why commands never run as root: the child
switches to the task's own uid (see `app.sandbox.uids`) after setting the limits. Memory and
process counts across the whole tree are held by a cgroup where one can be made
(`app.sandbox.cgroups`); the disk cap by `app.sandbox.diskcap`.
"""

from __future__ import annotations

import os
import resource
from dataclasses import dataclass

MiB = 1024 * 1024


@dataclass(frozen=True)
class Limits:
    """Ceilings for one command; the defaults suit a test suite or a small build."""

    cpu_s: int = 60  # soft: SIGXCPU; the hard limit (+5 s) then SIGKILLs
    address_space_bytes: int = 2048 * MiB
    nproc: int = 128  # per task uid, host-wide: a fork bomb stops here
    file_size_bytes: int = 256 * MiB
    open_files: int = 256
    workspace_bytes: int = 2048 * MiB
    output_bytes: int = 1 * MiB  # what is kept (head + tail)
    output_kill_bytes: int = 64 * MiB  # a command printing more than this is killed
    tmp_bytes: int = 256 * MiB  # size of the private /tmp (tmpfs)
    memory_bytes: int = 2048 * MiB  # the whole command's tree, where a cgroup can hold it
    pids: int = 256  # processes of the whole command's tree, where a cgroup can count them

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
