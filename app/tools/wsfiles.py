"""Reading and writing one workspace text file from the host, for the editing tools.

The edit tools' only way to disk, on top of app/sandbox/fs.py (the one safe path for
host-side workspace I/O): no link is followed anywhere on the path, only a regular file with a
single link is read or rewritten, a FIFO cannot block, and a rewrite goes through a temp file
created exclusively and renamed over the name. Here the size and text checks the edit tools
need are added, and fs's refusals become tool errors the model reads.
"""

from __future__ import annotations

from app.sandbox import fs
from app.sandbox.workspace import Workspace
from app.tools.errors import ToolError, ToolRefused

MAX_EDIT_BYTES = 2 * 1024 * 1024


def _refusal(rel: str, exc: fs.PathRefused) -> ToolError:
    if isinstance(exc, fs.NotFound):
        return ToolError(f"no such file in the workspace: {rel!r}")
    if isinstance(exc, fs.TooBig):
        return ToolError(f"{rel} is over {MAX_EDIT_BYTES} bytes; such files are not edited"
                         " with these tools")
    return ToolRefused(f"{rel}: {exc}")


def refuse_git_metadata(rel: str) -> None:
    """git's own metadata (.git/…) is not written by the file tools: a planted config, hook or
    filter would make an allowed git command run a program of the model's choosing."""
    if ".git" in fs.split(rel):
        raise ToolRefused(f"{rel}: files under .git/ are git's to write; use git commands")


def load(ws: Workspace, rel: str) -> str:
    """The UTF-8 text of the workspace file `rel` (at most MAX_EDIT_BYTES)."""
    try:
        data = fs.read_bytes(ws.root, rel, MAX_EDIT_BYTES)
    except fs.PathRefused as exc:
        raise _refusal(rel, exc) from None
    if b"\x00" in data:
        raise ToolError(f"{rel} is a binary file")
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise ToolError(f"{rel} is not UTF-8 text") from None


def save(ws: Workspace, rel: str, text: str) -> int:
    """Replace the content of the existing workspace file `rel`; returns the bytes written."""
    data = text.encode("utf-8")
    if len(data) > MAX_EDIT_BYTES:
        raise ToolError(f"the result would be {len(data)} bytes; the limit is {MAX_EDIT_BYTES}")
    try:
        refuse_git_metadata(rel)
        if fs.kind(ws.root, rel) != "file":
            raise ToolError(f"no such file in the workspace: {rel!r}")
        fs.file_size(ws.root, rel)  # refuses a link, FIFO or hard-linked file before replacing
        return fs.write_bytes(ws.root, rel, data)
    except fs.PathRefused as exc:
        raise _refusal(rel, exc) from None
