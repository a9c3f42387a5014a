"""read_file, write_file, list_files: confined to the task's workspace."""

from __future__ import annotations

import os

from app.tools.errors import ToolError
from app.tools.registry import ToolContext, ToolResult, tool

MAX_READ_BYTES = 200_000
MAX_WRITE_BYTES = 5 * 1024 * 1024
MAX_LIST_ENTRIES = 500
HIDDEN = {".venv", ".git", "__pycache__"}


def _looks_binary(chunk: bytes) -> bool:
    if b"\x00" in chunk:
        return True
    try:
        chunk.decode("utf-8")
    except UnicodeDecodeError as exc:
        return exc.start < len(chunk) - 4  # a cut multi-byte char at the end is fine
    return False


@tool(
    "read_file",
    "Read a text file from the workspace (path relative to the workspace root).",
    {
        "properties": {"path": {"type": "string", "description": "e.g. src/main.py"}},
        "required": ["path"],
    },
)
async def read_file(ctx: ToolContext, path: str) -> ToolResult:
    target = ctx.workspace.resolve(path, must_exist=True)
    if target.is_dir():
        raise ToolError(f"{path} is a directory; use list_files")
    size = target.stat().st_size
    with open(target, "rb") as fh:
        chunk = fh.read(MAX_READ_BYTES)
    if _looks_binary(chunk[:8192]):
        return ToolResult(f"{path} is a binary file ({size} bytes); not shown", {"bytes": size})
    text = chunk.decode("utf-8", errors="replace")
    if size > MAX_READ_BYTES:
        text += f"\n…[file is {size} bytes; only the first {MAX_READ_BYTES} shown]"
    return ToolResult(text, {"bytes": size})


@tool(
    "write_file",
    "Create a new text file (or replace one whole) in the workspace; parent folders are created."
    " To change part of an existing file use edit_file.",
    {
        "properties": {
            "path": {"type": "string", "description": "relative path, e.g. src/app.py"},
            "content": {"type": "string"},
        },
        "required": ["path", "content"],
    },
)
async def write_file(ctx: ToolContext, path: str, content: str) -> ToolResult:
    data = content.encode("utf-8")
    if len(data) > MAX_WRITE_BYTES:
        raise ToolError(f"content is {len(data)} bytes; the limit is {MAX_WRITE_BYTES}")
    target = ctx.workspace.resolve(path)
    if target.is_dir():
        raise ToolError(f"{path} is a directory")
    rel_parts = target.relative_to(ctx.workspace.root).parts
    if rel_parts and rel_parts[0] == ".venv":
        raise ToolError("the venv is managed by pip_install; do not write into it")
    target.parent.mkdir(parents=True, exist_ok=True)
    # O_NOFOLLOW: a symlink planted at the last component after resolve() is not followed.
    fd = os.open(target, os.O_WRONLY | os.O_CREAT | os.O_TRUNC | os.O_NOFOLLOW, 0o644)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
    return ToolResult(f"wrote {len(data)} bytes to {path}", {"bytes": len(data), "path": path})


@tool(
    "list_files",
    "List files under a folder of the workspace (default: the whole workspace).",
    {"properties": {"path": {"type": "string", "description": "folder, default '.'"}}},
)
async def list_files(ctx: ToolContext, path: str = ".") -> ToolResult:
    base = ctx.workspace.resolve(path or ".", must_exist=True)
    if not base.is_dir():
        raise ToolError(f"{path} is not a directory")
    entries: list[str] = []
    for dirpath, dirnames, filenames in os.walk(base):
        dirnames[:] = sorted(d for d in dirnames if d not in HIDDEN)
        for name in sorted(filenames):
            full = os.path.join(dirpath, name)
            rel = os.path.relpath(full, ctx.workspace.root)
            try:
                size = os.lstat(full).st_size
            except OSError:
                continue
            entries.append(f"{rel} ({size} bytes)")
            if len(entries) >= MAX_LIST_ENTRIES:
                entries.append(f"…more than {MAX_LIST_ENTRIES} files; list a subfolder")
                return ToolResult("\n".join(entries), {"count": len(entries)})
    return ToolResult("\n".join(entries) or "(no files)", {"count": len(entries)})
