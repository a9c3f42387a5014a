"""What a task report shows, gathered from the task row, its event log and its workspace.

Everything here is untrusted text (model output, web pages): it is passed to Jinja with
autoescape on, and only Markdown rendered with raw HTML disabled is marked safe.
"""

from __future__ import annotations

import contextlib
import itertools
import json
from collections.abc import Callable
from datetime import datetime
from pathlib import Path
from typing import Any

from markupsafe import Markup

from app.core.redact import redact
from app.integrations.markup import markdown_to_html
from app.sandbox import fs

IMAGE_SUFFIXES = {".png", ".svg", ".jpg", ".jpeg", ".gif"}
MAX_TEXT = 4000
MAX_TIMELINE = 400
MAX_FILES = 200
MAX_IMAGES = 12
MAX_SCANNED = 10_000
MAX_PLAN_BYTES = 400_000


def clip(text: Any, limit: int = MAX_TEXT) -> str:
    """`text` as a string, cut at `limit` characters with a visible note."""
    text = redact(text if isinstance(text, str) else json.dumps(text, default=str))
    if len(text) <= limit:
        return text
    return f"{text[:limit]}\n… [truncated: {len(text) - limit} more characters]"


def markdown(text: str | None, limit: int = MAX_TEXT * 4) -> Markup:
    """Agent Markdown as safe HTML (raw HTML in it is escaped, not interpreted)."""
    return Markup(markdown_to_html(clip(text or "", limit)))  # noqa: S704 - html=False renderer


def describe_event(type_: str, data: dict[str, Any]) -> str:
    """One readable line for a timeline entry."""
    if type_ == "phase":
        return f"Phase: {data.get('phase', '?')}"
    if type_ == "tool_call":
        ok = "ok" if data.get("ok") else "failed"
        args = clip(data.get("args", {}), 160)
        return f"{data.get('tool', '?')}({args}) → {ok} in {data.get('duration_ms', 0):.0f} ms"
    if type_ == "llm_call":
        return (
            f"Model {data.get('model', '?')}: {data.get('prompt_tokens', 0)} + "
            f"{data.get('completion_tokens', 0)} tokens, ${data.get('cost_usd', 0) or 0:.4f}"
        )
    if type_ == "search":
        n = len(data.get("results") or [])
        return f"Searched “{data.get('query', '')}” ({n} results)"
    if type_ == "citation":
        return f"Fetched {data.get('title') or ''} <{data.get('url', '')}>"
    if type_ == "review":
        return f"Review: {data.get('verdict', '?')} (score {data.get('score', '?')})"
    if type_ == "status":
        reason = f" — {data['reason']}" if data.get("reason") else ""
        return f"Status → {data.get('status', '?')}{reason}"
    if type_ == "finished":
        return "Finished"
    return f"{type_}: {clip(data, 200)}"


def timeline(events: list[Any]) -> tuple[list[dict[str, Any]], int]:
    """Readable steps (tool output clipped) and how many were left out."""
    rows = []
    for ev in events[:MAX_TIMELINE]:
        detail = ""
        if ev.type == "tool_call" and ev.data.get("output"):
            detail = clip(ev.data["output"], 240)
        rows.append(
            {
                "seq": ev.seq,
                "at": ev.created_at,
                "type": ev.type,
                "text": clip(describe_event(ev.type, ev.data), 400),
                "detail": detail,
            }
        )
    return rows, max(0, len(events) - MAX_TIMELINE)


def citations(events: list[Any]) -> list[dict[str, Any]]:
    """Every fetched source once, with the number the agent was told to cite it by (else in
    the order first fetched), its type and where it was saved."""
    seen: dict[str, dict[str, Any]] = {}
    for ev in events:
        url = ev.data.get("url") if ev.type == "citation" else None
        if url and url not in seen:
            number = ev.data.get("n")
            seen[url] = {
                "n": number if isinstance(number, int) else len(seen) + 1,
                "url": clip(url, 500),
                "title": clip(ev.data.get("title") or url, 300),
                "fetched_at": ev.data.get("fetched_at") or ev.created_at,
                "kind": clip(ev.data.get("kind") or "", 20),
                "path": clip(ev.data.get("original") or ev.data.get("path") or "", 200),
            }
    return sorted(seen.values(), key=lambda c: c["n"])


def searches(events: list[Any]) -> list[dict[str, Any]]:
    """The search history: query, backend and the first few results."""
    out = []
    for ev in events:
        if ev.type == "search":
            results = [
                {"title": clip(r.get("title", ""), 200), "url": clip(r.get("url", ""), 300)}
                for r in (ev.data.get("results") or [])[:5]
                if isinstance(r, dict)
            ]
            out.append(
                {
                    "query": clip(ev.data.get("query", ""), 300),
                    "backend": ev.data.get("backend", ""),
                    "results": results,
                    "count": len(ev.data.get("results") or []),
                }
            )
    return out


def plan(task: Any, events: list[Any], root: Path | None) -> str:
    """The plan: a `plan` event, the task spec, or a PLAN.md the agent wrote."""
    for ev in reversed(events):
        if ev.type == "plan" and ev.data.get("plan"):
            return str(ev.data["plan"])
    if isinstance(task.spec, dict) and task.spec.get("plan"):
        return str(task.spec["plan"])
    for rel in ("PLAN.md", "plan.md", "output/PLAN.md", "output/plan.md"):
        with contextlib.suppress(fs.PathRefused):  # missing, a link, a FIFO: not this one
            return fs.read_text(root, rel, MAX_PLAN_BYTES) if root else ""
    return ""


def output_files(
    root: Path | None, link: Callable[[str], str]
) -> tuple[list[dict], list[str]]:
    """Files in output/ (`link` makes each one's URL from its path within output/) and the
    images among them (paths from root)."""
    files: list[dict[str, Any]] = []
    images: list[str] = []
    if root is None or fs.kind(root, "output") != "dir":
        return files, images
    for entry in itertools.islice(fs.files(root, "output"), MAX_SCANNED):
        rel = f"output/{entry.path}"
        if len(files) < MAX_FILES:
            files.append({"path": rel, "size": entry.size, "url": link(entry.path)})
        if Path(entry.name).suffix.lower() in IMAGE_SUFFIXES and len(images) < MAX_IMAGES:
            images.append(rel)
    return files, images


def duration(start: datetime | None, end: datetime | None) -> str:
    if not start or not end:
        return "—"
    seconds = int((end - start).total_seconds())
    return f"{seconds // 3600}h {seconds % 3600 // 60}m {seconds % 60}s"
