"""Agent Markdown as HTML for reports, and where the report templates live — without loading
WeasyPrint (app.integrations.pdf renders; it is imported only when a PDF is made)."""

from __future__ import annotations

from app.core.config import TEMPLATES_DIR

REPORTS_TEMPLATES = TEMPLATES_DIR / "reports"


def markdown_to_html(text: str) -> str:
    """Agent-written Markdown as HTML; raw HTML is escaped, links and images stay (the fetcher
    decides what an image may load)."""
    from markdown_it import MarkdownIt  # only reports need it: not loaded by an idle process

    md = MarkdownIt("commonmark", {"html": False, "linkify": False, "typographer": False})
    md.enable("table").enable("strikethrough")
    return md.render(text)
