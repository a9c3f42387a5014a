"""finish(summary): the final answer of a phase is itself a tool."""

from __future__ import annotations

from app.tools.errors import FinishRequested, ToolError
from app.tools.registry import ToolContext, tool


@tool(
    "finish",
    "Call when the current phase's work is done, with a short summary of what was done.",
    {"properties": {"summary": {"type": "string"}}, "required": ["summary"]},
)
async def finish(ctx: ToolContext, summary: str) -> str:
    if not summary.strip():
        raise ToolError("summary must not be empty")
    raise FinishRequested(summary.strip()[:20_000])
