"""make_report: the agent's Markdown as a styled PDF in output/ (same look as task reports)."""

from __future__ import annotations

import asyncio
import re

from app.tools.errors import ToolError
from app.tools.registry import ToolContext, ToolResult, tool

MAX_MARKDOWN_CHARS = 400_000


def slugify(title: str) -> str:
    slug = re.sub(r"[^a-z0-9]+", "-", title.lower()).strip("-")[:60].strip("-")
    return slug or "report"


@tool(
    "make_report",
    "Render Markdown (headings, lists, tables, code, images from the workspace) as a PDF "
    "report saved to output/<slug-of-title>.pdf. Remote images are not loaded.",
    {
        "properties": {
            "title": {"type": "string", "description": "Report title; also names the file"},
            "markdown": {"type": "string", "description": "The report body in Markdown"},
        },
        "required": ["title", "markdown"],
    },
)
async def make_report(ctx: ToolContext, title: str, markdown: str) -> ToolResult:
    if not title.strip():
        raise ToolError("title must not be empty")
    if len(markdown) > MAX_MARKDOWN_CHARS:
        raise ToolError(f"markdown is longer than {MAX_MARKDOWN_CHARS} characters")
    rel = f"output/{slugify(title)}.pdf"
    # WeasyPrint is loaded on first use: an idle worker should not carry the PDF stack.
    from app.integrations.report import render_markdown_report

    # WeasyPrint is CPU-bound and synchronous: keep the event loop free.
    size = await asyncio.to_thread(
        render_markdown_report, title, markdown, workspace_root=ctx.workspace.root,
        out=ctx.workspace.root / rel,
    )
    return ToolResult(f"Wrote {rel} ({size} bytes).", {"path": rel, "bytes": size})
