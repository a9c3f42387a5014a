"""Pure text helpers for the editing tools: finding a snippet, the nearest match, numbered lines
and a bounded unified diff. Nothing here touches disk."""

from __future__ import annotations

import difflib

MAX_DIFF_CHARS = 8_000
MAX_SCAN_LINES = 20_000


def line_of(text: str, index: int) -> int:
    """The 1-based line number of character `index`."""
    return text.count("\n", 0, index) + 1


def occurrences(text: str, snippet: str) -> list[int]:
    """Start indexes of the non-overlapping occurrences of `snippet` in `text`."""
    found: list[int] = []
    at = text.find(snippet)
    while at >= 0:
        found.append(at)
        at = text.find(snippet, at + len(snippet))
    return found


def numbered(lines: list[str], first: int) -> str:
    """Lines prefixed by their 1-based numbers, `first` being the number of lines[0]."""
    width = len(str(first + len(lines) - 1))
    return "\n".join(f"{n:>{width}}\t{line}" for n, line in enumerate(lines, start=first))


def nearest_match(text: str, snippet: str) -> tuple[int, int, float] | None:
    """(first line, last line, similarity) of the window of lines most like `snippet`."""
    lines = text.splitlines()
    want = snippet.strip("\n").splitlines() or [snippet]
    size = len(want)
    if not lines or len(lines) > MAX_SCAN_LINES:
        return None
    target = "\n".join(want)
    scored: list[tuple[float, int]] = []
    for start in range(max(1, len(lines) - size + 1)):
        window = "\n".join(lines[start:start + size])
        scored.append((difflib.SequenceMatcher(None, window, target).quick_ratio(), start))
    best_ratio, best_start = 0.0, 0
    for _quick, start in sorted(scored, reverse=True)[:20]:
        window = "\n".join(lines[start:start + size])
        ratio = difflib.SequenceMatcher(None, window, target).ratio()
        if ratio > best_ratio:
            best_ratio, best_start = ratio, start
    end = min(len(lines), best_start + size)
    return best_start + 1, end, best_ratio


def unified_diff(path: str, before: str, after: str, limit: int = MAX_DIFF_CHARS) -> str:
    """A unified diff of the change, cut (and marked) at `limit` characters."""
    diff = "".join(difflib.unified_diff(
        before.splitlines(keepends=True), after.splitlines(keepends=True),
        fromfile=f"a/{path}", tofile=f"b/{path}", n=3))
    if len(diff) > limit:
        diff = diff[:limit] + f"\n…[diff cut: {len(diff) - limit} more characters]\n"
    return diff


def diff_counts(before: str, after: str) -> tuple[int, int]:
    """(lines added, lines removed)."""
    added = removed = 0
    for line in difflib.ndiff(before.splitlines(), after.splitlines()):
        added += line.startswith("+ ")
        removed += line.startswith("- ")
    return added, removed
