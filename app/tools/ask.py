"""ask_user(question): ask the person who submitted the task, and wait for the answer.

The task goes to `waiting_input` (a `question` event carries the question) without holding an
agent slot, and its owner is told where to answer (app.run.agent.waiting); it resumes when an
answer or a message is posted to it, or fails when none comes in time.
"""

from __future__ import annotations

from app.tools.errors import ToolError, WaitRequested
from app.tools.registry import ToolContext, tool


@tool(
    "ask_user",
    "Ask the person who gave you the task a question you cannot answer yourself. They are"
    " notified; the task pauses until they reply (if nobody does in time, the task fails);"
    " their answer arrives as a message. Use sparingly, one clear question at a time.",
    {"properties": {"question": {"type": "string"}}, "required": ["question"]},
)
async def ask_user(ctx: ToolContext, question: str) -> str:
    if not question.strip():
        raise ToolError("the question must not be empty")
    raise WaitRequested("input", question=question.strip()[:4000])
