"""Reading and writing one workspace text file from the host, for the editing tools.

The only two functions the edit tools use to touch disk, so that moving them onto
app/sandbox/fs.py (the one safe path for host-side workspace I/O) is a change here alone.
Until then they keep its rules themselves: the path is vetted by `Workspace.resolve`, then
opened one component at a time from the workspace root, each with O_NOFOLLOW relative to its
parent's descriptor (a symlink anywhere on the way, even one planted after the check, is not
followed), only a regular file with a single link is read or rewritten (no FIFO, device or hard
link out), and a FIFO cannot block the open (O_NONBLOCK).
"""

from __future__ import annotations

import os
import stat
from pathlib import PurePosixPath

from app.sandbox.workspace import Workspace
from app.tools.errors import ToolError, ToolRefused

MAX_EDIT_BYTES = 2 * 1024 * 1024
_BASE_FLAGS = os.O_NOFOLLOW | os.O_NONBLOCK | getattr(os, "O_CLOEXEC", 0)


def _check_regular(fd: int, rel: str) -> os.stat_result:
    info = os.fstat(fd)
    if not stat.S_ISREG(info.st_mode):
        raise ToolRefused(f"{rel} is not a regular file")
    if info.st_nlink > 1:
        raise ToolRefused(f"{rel} has other hard links; it is not edited in place")
    return info


def _open_beneath(root: str, parts: list[str], flags: int) -> int:
    """Open root/parts[0]/…/parts[-1] without following a link at any step."""
    directory = os.open(root, os.O_RDONLY | os.O_DIRECTORY | getattr(os, "O_CLOEXEC", 0))
    try:
        for part in parts[:-1]:
            step = os.open(part, os.O_RDONLY | os.O_DIRECTORY | _BASE_FLAGS, dir_fd=directory)
            os.close(directory)
            directory = step
        return os.open(parts[-1], flags | _BASE_FLAGS, 0o644, dir_fd=directory)
    finally:
        os.close(directory)


def _open(ws: Workspace, rel: str, flags: int) -> int:
    ws.resolve(rel)  # refuses absolute paths, `..` and anything leaving the workspace
    parts = [p for p in PurePosixPath(rel).parts if p not in ("", ".")]
    if not parts:
        raise ToolError(f"{rel!r} names no file")
    try:
        return _open_beneath(str(ws.root), parts, flags)
    except FileNotFoundError:
        raise ToolError(f"no such file in the workspace: {rel!r}") from None
    except IsADirectoryError:
        raise ToolError(f"{rel} is a directory") from None
    except OSError as exc:  # ELOOP / ENOTDIR: a link on the way
        raise ToolRefused(f"{rel} cannot be opened without following a link"
                          f" ({exc.strerror})") from None


def read_text(ws: Workspace, rel: str) -> str:
    """The UTF-8 text of the workspace file `rel` (at most MAX_EDIT_BYTES)."""
    fd = _open(ws, rel, os.O_RDONLY)
    with os.fdopen(fd, "rb") as fh:
        info = _check_regular(fh.fileno(), rel)
        if info.st_size > MAX_EDIT_BYTES:
            raise ToolError(f"{rel} is {info.st_size} bytes; files over {MAX_EDIT_BYTES}"
                            " bytes are not edited with these tools")
        data = fh.read(MAX_EDIT_BYTES + 1)
    if b"\x00" in data:
        raise ToolError(f"{rel} is a binary file")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise ToolError(f"{rel} is not UTF-8 text") from None


def write_text(ws: Workspace, rel: str, text: str) -> int:
    """Replace the content of the existing workspace file `rel`; returns the bytes written."""
    data = text.encode("utf-8")
    if len(data) > MAX_EDIT_BYTES:
        raise ToolError(f"the result would be {len(data)} bytes; the limit is {MAX_EDIT_BYTES}")
    fd = _open(ws, rel, os.O_WRONLY)
    with os.fdopen(fd, "wb") as fh:
        _check_regular(fh.fileno(), rel)  # checked on the opened file, before truncating it
        fh.truncate(0)
        fh.write(data)
    return len(data)
