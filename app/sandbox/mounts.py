"""Staging of the jail's bind sources, done in the forked child while it is still root.

Why: bubblewrap started as root with --unshare-user maps the sandbox uid onto host uid 0
(RLIMIT_NPROC is then not enforced and files come out root-owned), so the child first drops to
the sandbox uid and bubblewrap runs unprivileged. An unprivileged bubblewrap cannot reach paths
under 0700 directories (/root/.pyenv, pytest's tmp dirs) and refuses fd binds there too. So,
still root, the child enters a private mount namespace, mounts a small tmpfs on a stage
directory and bind-mounts the workspace and the interpreter prefix into it; bubblewrap then
binds them from the stage. The host's mount table is never touched (MS_PRIVATE, own namespace).
"""

from __future__ import annotations

import ctypes
import os

_libc = ctypes.CDLL(None, use_errno=True)
CLONE_NEWNS = 0x00020000
MS_NOSUID = 2
MS_NODEV = 4
MS_NOEXEC = 8
MS_BIND = 4096
MS_REC = 16384
MS_PRIVATE = 1 << 18
STAGE_CANDIDATES = ("/media", "/srv", "/mnt", "/opt", "/boot")


def _check(rc: int, what: str) -> None:
    if rc != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def _mount(src: str | None, target: str, fstype: str | None, flags: int, data: str = "") -> None:
    rc = _libc.mount(
        src.encode() if src else None,
        target.encode(),
        fstype.encode() if fstype else None,
        ctypes.c_ulong(flags),
        data.encode() if data else None,
    )
    _check(rc, f"mount {src} on {target}")


def stage_dir_for(sources: list[str]) -> str:
    """An existing directory that is no ancestor of any source (the tmpfs would hide it)."""
    for cand in STAGE_CANDIDATES:
        hides = any(s == cand or s.startswith(cand + "/") for s in sources)
        if os.path.isdir(cand) and not os.path.islink(cand) and not hides:
            return cand
    raise RuntimeError("no directory available to stage the jail's mounts")


def stage_binds(stage: str, binds: dict[str, str]) -> None:
    """In the calling (child) process: private mount ns, tmpfs on `stage`, binds `name -> src`.

    Runs between fork and exec, so it only makes system calls and raises on any failure.
    """
    _check(_libc.unshare(CLONE_NEWNS), "unshare(CLONE_NEWNS)")
    _mount(None, "/", None, MS_REC | MS_PRIVATE)
    _mount("tbstage", stage, "tmpfs", MS_NOSUID | MS_NODEV | MS_NOEXEC, "mode=0755,size=64k")
    for name, src in binds.items():
        target = f"{stage}/{name}"
        os.mkdir(target, 0o755)
        _mount(src, target, None, MS_BIND | MS_REC)
