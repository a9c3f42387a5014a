"""delegate(title, description, complexity): hand part of the work to a subtask.

The tool only asks; the runner provides the `delegate` service that creates the child (its
budget drawn from this task's) and makes the loop pause until every child has ended.
"""

from __future__ import annotations

from app.tools.errors import ToolError
from app.tools.registry import ToolContext, ToolResult, tool


@tool(
    "delegate",
    "Hand a self-contained part of the work to a subtask, done by an agent chosen by its"
    " complexity (1-10). Describe it fully: the subtask sees only this text. After this reply"
    " your task pauses until every subtask has ended; then you get each one's summary and its"
    " output files under subtasks/<id>/.",
    {
        "properties": {
            "title": {"type": "string", "description": "A short title for the subtask"},
            "description": {"type": "string", "description": "Everything the subtask needs"},
            "complexity": {"type": "integer", "minimum": 1, "maximum": 10},
            "shared_workspace": {
                "type": "boolean",
                "description": "Let the subtask work in this task's own workspace (tool calls"
                " of all tasks sharing it are serialized); default: a workspace of its own",
            },
        },
        "required": ["title", "description", "complexity"],
    },
)
async def delegate(
    ctx: ToolContext, title: str, description: str, complexity: int,
    shared_workspace: bool = False,
) -> ToolResult:
    create = ctx.services.delegate
    if create is None:
        raise ToolError("delegation is not available in this task")
    if not 1 <= complexity <= 10:
        raise ToolError("complexity must be between 1 and 10")
    if not title.strip() or not description.strip():
        raise ToolError("a subtask needs a title and a description")
    child_id = await create(title.strip()[:300], description.strip(), complexity,
                            bool(shared_workspace))
    return ToolResult(
        f"Subtask #{child_id} created. This task pauses after this reply until its subtasks"
        " end; their results will follow.",
        {"child_id": child_id},
    )
