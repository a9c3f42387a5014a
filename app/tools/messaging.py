"""message_task(task_id, content): talk to this task's parent or subtasks.

Messages travel on the task message channel people use (POST /tasks/{id}/messages); the other
task reads them on its next step. The runner provides the `message_task` service.
"""

from __future__ import annotations

from app.tools.errors import ToolError
from app.tools.registry import ToolContext, ToolResult, tool


@tool(
    "message_task",
    "Send a message to this task's parent task or to one of its subtasks (by id); it reads"
    " it on its next step.",
    {
        "properties": {
            "task_id": {"type": "integer", "description": "the parent's or a subtask's id"},
            "content": {"type": "string"},
        },
        "required": ["task_id", "content"],
    },
)
async def message_task(ctx: ToolContext, task_id: int, content: str) -> ToolResult:
    send = ctx.services.message_task
    if send is None:
        raise ToolError("messaging other tasks is not available in this task")
    if not content.strip():
        raise ToolError("the message is empty")
    result = await send(int(task_id), content.strip()[:20_000])
    return ToolResult(result, {"to": task_id})
