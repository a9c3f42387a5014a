"""read_file, write_file, list_files: confined to the task's workspace, through app.sandbox.fs
(links are listed as links, never followed; FIFOs, devices and hard-linked files are refused)."""

from __future__ import annotations

import asyncio
import itertools
import os
from pathlib import Path

from app.sandbox import fs
from app.tools.errors import ToolError
from app.tools.registry import ToolContext, ToolResult, tool
from app.tools.wsfiles import refuse_git_metadata

MAX_READ_BYTES = 200_000
MAX_WRITE_BYTES = 5 * 1024 * 1024
MAX_LIST_ENTRIES = 500
HIDDEN = frozenset({".venv", ".git", "__pycache__"})


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
    try:
        chunk, size = await asyncio.to_thread(fs.read_head, ctx.workspace.root, path,
                                              MAX_READ_BYTES)
    except fs.WrongKind as exc:
        raise ToolError(f"{path} is a directory; use list_files") from exc
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
    parts = fs.split(path)
    if parts and parts[0] == ".venv":
        raise ToolError("the venv is managed by pip_install; do not write into it")
    refuse_git_metadata(path)
    try:
        await asyncio.to_thread(fs.write_bytes, ctx.workspace.root, path, data)
    except fs.WrongKind as exc:
        raise ToolError(f"{path} is a directory") from exc
    return ToolResult(f"wrote {len(data)} bytes to {path}", {"bytes": len(data), "path": path})


def _listing(root: Path, path: str) -> list[str]:
    entries: list[str] = []
    for entry in itertools.islice(fs.walk(root, path, skip=HIDDEN), MAX_LIST_ENTRIES + 1):
        if entry.kind == "dir":
            continue
        if len(entries) >= MAX_LIST_ENTRIES:
            entries.append(f"…more than {MAX_LIST_ENTRIES} files; list a subfolder")
            break
        rel = os.path.normpath(os.path.join(path, entry.path))
        note = "" if entry.kind == "file" else f", {entry.kind}"
        entries.append(f"{rel} ({entry.size} bytes{note})")
    return entries


@tool(
    "list_files",
    "List files under a folder of the workspace (default: the whole workspace).",
    {"properties": {"path": {"type": "string", "description": "folder, default '.'"}}},
)
async def list_files(ctx: ToolContext, path: str = ".") -> ToolResult:
    try:
        entries = await asyncio.to_thread(_listing, ctx.workspace.root, path or ".")
    except fs.WrongKind as exc:
        raise ToolError(f"{path} is not a directory") from exc
    return ToolResult("\n".join(entries) or "(no files)", {"count": len(entries)})
