"""Who owns a workspace's files: the task's uid, handed over without following anything.

    hand_over(root, uid, gid)  before a command: the workspace root (0700) and what the host
                               wrote since the last command become the task's; returns the
                               exact size in bytes when it had to walk everything, else None

Rules (an attacker in the jail plants links between commands):
- never follow a symlink (lchown, no descent) and never descend into one;
- never chown a file with more than one hard link: its other name may be outside (uv's cache,
  another task's venv), and chowning the inode would hand that file to this task;
- a full walk only when the workspace changes hands (its root is not the uid's yet, e.g. a
  resumed task got another uid, or a fresh workspace); otherwise only the parts the host
  writes between commands, leaving out `.venv` unless its own directory is not the uid's
  (the host made it: create_venv), because pip_install owns what it copies in itself.
"""

from __future__ import annotations

import os
import stat
from pathlib import Path

VENV = ".venv"


def hand_over(root: Path, uid: int, gid: int) -> int | None:
    """Give the workspace to (uid, gid); the full size in bytes if it walked everything."""
    st = os.lstat(root)
    if not stat.S_ISDIR(st.st_mode):
        raise NotADirectoryError(f"workspace root is not a directory: {root}")
    if (st.st_uid, st.st_gid) != (uid, gid):
        os.chown(root, uid, gid, follow_symlinks=False)
        os.chmod(root, 0o700, follow_symlinks=False)
        return walk(str(root), uid, gid, skip=())
    venv = os.path.join(root, VENV)
    try:
        vst = os.lstat(venv)
        skip: tuple[str, ...] = (venv,) if (vst.st_uid, vst.st_gid) == (uid, gid) else ()
    except FileNotFoundError:
        skip = ()
    walk(str(root), uid, gid, skip=skip)
    return None


def walk(top: str, uid: int | None, gid: int | None, *, skip: tuple[str, ...]) -> int:
    """Bytes used under `top` (blocks, links not followed); chowns on the way when uid given.

    Directory by directory through file descriptors (os.fwalk), so a directory swapped for a
    symlink while a command runs (the disk cap walks then) is never followed."""
    total = 0
    for dirpath, dirnames, filenames, dirfd in os.fwalk(top, follow_symlinks=False):
        for name in dirnames + filenames:
            try:
                st = os.stat(name, dir_fd=dirfd, follow_symlinks=False)
            except FileNotFoundError:
                continue  # removed while we walked
            total += st.st_blocks * 512 if st.st_blocks else st.st_size
            if uid is not None and gid is not None:
                own(name, st, uid, gid, dir_fd=dirfd)
        if skip:
            dirnames[:] = [d for d in dirnames if os.path.join(dirpath, d) not in skip]
    return total


def own(path: str, st: os.stat_result, uid: int, gid: int, *, dir_fd: int | None = None) -> None:
    """lchown `path` to (uid, gid) unless it already is, or is a multiply-linked file."""
    if (st.st_uid, st.st_gid) == (uid, gid):
        return
    if not stat.S_ISDIR(st.st_mode) and st.st_nlink > 1:
        return  # another name of this inode may live outside the workspace
    os.chown(path, uid, gid, dir_fd=dir_fd, follow_symlinks=False)
