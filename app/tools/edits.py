"""view_file, edit_file, insert_lines, undo_edit: precise edits of workspace text files.

Edits replace an exact snippet (refused, with the nearest match or every occurrence's line,
when it is missing or ambiguous), keep the previous version for `undo_edit`, and put a bounded
unified diff in the `tool_call` event (`data.diff`) that the dashboard shows. Workspace files
are read and written through app.tools.wsfiles only; previous versions live in app.tools.undo.
"""

from __future__ import annotations

import asyncio
from typing import Any

from app.tools import wsfiles
from app.tools.errors import ToolError
from app.tools.registry import ToolContext, ToolResult, tool
from app.tools.textedit import (
    diff_counts,
    line_of,
    nearest_match,
    numbered,
    occurrences,
    unified_diff,
)
from app.tools.undo import UndoStore

MAX_VIEW_LINES = 400
SNIPPET_CONTEXT = 3


def _history(ctx: ToolContext) -> UndoStore:
    return UndoStore.beside(ctx.workspace)


def _key(ctx: ToolContext, path: str) -> str:
    return ctx.workspace.relative(ctx.workspace.resolve(path))


def _snippet(text: str, first: int, last: int) -> str:
    lines = text.splitlines()
    lo = max(1, first - SNIPPET_CONTEXT)
    hi = min(len(lines), last + SNIPPET_CONTEXT)
    return numbered(lines[lo - 1:hi], lo)


def _save(ctx: ToolContext, path: str, before: str, after: str, *, what: str, first: int,
          last: int, undoable: bool = True) -> ToolResult:
    """Write `after`, remember `before` for undo, and describe the change with its diff."""
    key = _key(ctx, path)
    wsfiles.save(ctx.workspace, path, after)
    if undoable:
        _history(ctx).push(key, before)
    added, removed = diff_counts(before, after)
    data: dict[str, Any] = {"path": key, "diff": unified_diff(key, before, after),
                            "added": added, "removed": removed}
    shown = _snippet(after, first, last) if after else "(the file is now empty)"
    return ToolResult(f"{what} in {key}. The changed region now reads:\n{shown}", data)


@tool(
    "view_file",
    "Show lines of a text file with their line numbers (1-based, `end` inclusive; default: from"
    f" the start, at most {MAX_VIEW_LINES} lines). Use the numbers with insert_lines.",
    {
        "properties": {
            "path": {"type": "string", "description": "relative path, e.g. src/app.py"},
            "start": {"type": "integer", "description": "first line, default 1"},
            "end": {"type": "integer", "description": "last line, default the end"},
        },
        "required": ["path"],
    },
)
async def view_file(ctx: ToolContext, path: str, start: int = 1, end: int | None = None
                    ) -> ToolResult:
    lines = (await asyncio.to_thread(wsfiles.load, ctx.workspace, path)).splitlines()
    total = len(lines)
    start = start or 1
    if start < 1 or (end is not None and end < start):
        raise ToolError(f"bad range {start}-{end}: need 1 <= start <= end")
    if total == 0:
        return ToolResult(f"{path} is empty", {"lines": 0})
    if start > total:
        raise ToolError(f"{path} has {total} lines; start {start} is past the end")
    last = min(total, end or total, start + MAX_VIEW_LINES - 1)
    body = numbered(lines[start - 1:last], start)
    more = f"\n…[lines {last + 1}-{total} not shown]" if last < total else ""
    return ToolResult(f"{path} lines {start}-{last} of {total}:\n{body}{more}",
                      {"lines": total, "shown": [start, last]})


def _missing(path: str, text: str, old: str) -> ToolError:
    near = nearest_match(text, old)
    if near is None:
        return ToolError(f"`old` was not found in {path}")
    first, last, ratio = near
    return ToolError(
        f"`old` was not found in {path} (it must match exactly, whitespace included). The"
        f" nearest text is lines {first}-{last} ({ratio:.0%} similar):\n"
        f"{_snippet(text, first, last)}\nView the file and copy the exact text")


@tool(
    "edit_file",
    "Replace an exact snippet of an existing text file: `old` must occur exactly `count` times"
    " (default once; include enough surrounding lines to make it unique) and every occurrence"
    " becomes `new`. Prefer this to rewriting whole files with write_file.",
    {
        "properties": {
            "path": {"type": "string", "description": "relative path, e.g. src/app.py"},
            "old": {"type": "string", "description": "the exact text to replace"},
            "new": {"type": "string", "description": "the replacement text"},
            "count": {"type": "integer", "description": "occurrences expected, default 1"},
        },
        "required": ["path", "old", "new"],
    },
)
async def edit_file(ctx: ToolContext, path: str, old: str, new: str, count: int = 1
                    ) -> ToolResult:
    count = 1 if count is None else count
    if not old:
        raise ToolError("`old` must not be empty; use insert_lines or write_file to add text")
    if old == new:
        raise ToolError("`old` and `new` are the same; nothing to change")
    if count < 1:
        raise ToolError("count must be at least 1")
    before = await asyncio.to_thread(wsfiles.load, ctx.workspace, path)
    found = occurrences(before, old)
    if not found:
        raise _missing(path, before, old)
    if len(found) != count:
        lines = ", ".join(str(line_of(before, i)) for i in found[:50])
        raise ToolError(
            f"`old` occurs {len(found)} times in {path} (at lines {lines}), not {count}:"
            " add surrounding lines to make it unique, or set count to replace them all")
    after = before.replace(old, new, count)
    first = line_of(before, found[0])
    last = line_of(after, found[-1] + (len(new) - len(old)) * (len(found) - 1) + len(new))
    what = f"Replaced {count} occurrence{'s' if count > 1 else ''}"
    return await asyncio.to_thread(_save, ctx, path, before, after, what=what, first=first,
                                   last=last)


@tool(
    "insert_lines",
    "Insert text after line `line` of an existing text file (0 inserts at the top).",
    {
        "properties": {
            "path": {"type": "string", "description": "relative path, e.g. src/app.py"},
            "line": {"type": "integer", "description": "insert after this line; 0 = at the top"},
            "text": {"type": "string", "description": "the lines to insert"},
        },
        "required": ["path", "line", "text"],
    },
)
async def insert_lines(ctx: ToolContext, path: str, line: int, text: str) -> ToolResult:
    if not text:
        raise ToolError("text must not be empty")
    before = await asyncio.to_thread(wsfiles.load, ctx.workspace, path)
    lines = before.splitlines(keepends=True)
    if not 0 <= line <= len(lines):
        raise ToolError(f"line must be between 0 and {len(lines)} (the file's line count)")
    if line and not lines[line - 1].endswith("\n"):
        lines[line - 1] += "\n"  # the last line had no newline: do not glue onto it
    block = text if text.endswith("\n") or line == len(lines) else text + "\n"
    after = "".join(lines[:line]) + block + "".join(lines[line:])
    added = len(block.splitlines())
    return await asyncio.to_thread(
        _save, ctx, path, before, after, what=f"Inserted {added} line(s) after line {line}",
                 first=line + 1, last=line + added)


@tool(
    "undo_edit",
    "Undo the last edit_file / insert_lines / undo-able change of a file (repeatable).",
    {"properties": {"path": {"type": "string"}}, "required": ["path"]},
)
async def undo_edit(ctx: ToolContext, path: str) -> ToolResult:
    key = _key(ctx, path)
    if not _history(ctx).depth(key):
        raise ToolError(f"no edit of {key} to undo")
    before = await asyncio.to_thread(wsfiles.load, ctx.workspace, path)
    previous = _history(ctx).pop(key) or ""
    result = await asyncio.to_thread(
        _save, ctx, path, before, previous, what="Restored the previous version",
        first=1, last=min(10, len(previous.splitlines())), undoable=False)
    result.data["undo_left"] = _history(ctx).depth(key)
    return result
