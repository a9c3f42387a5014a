"""What a person is told when a task asks a question: the question, where to answer (absolute
links), and how long the task waits and what happens then. Email and webhooks both use it."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from app.core.config import Settings


def duration_text(seconds: float) -> str:
    """e.g. 3600 → "1 hour", 90 → "90 seconds", 5400 → "90 minutes"."""
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size and seconds % size == 0:
            n = int(seconds // size)
            return f"{n} {unit}{'s' if n != 1 else ''}"
    return f"{seconds:g} seconds"


def question_context(task: dict[str, Any], payload: dict[str, Any], settings: Settings
                     ) -> dict[str, Any]:
    """The question, the links to answer it and the deadline, for a template or a JSON body."""
    base = settings.base_url
    task_id = int(task["id"])
    timeout = float(payload.get("timeout_s") or settings.input_timeout_s)
    asked = payload.get("asked_at")
    deadline = (datetime.fromisoformat(asked) + timedelta(seconds=timeout)) if asked else None
    return {
        "question": str(payload.get("question") or ""),
        "asked_at": asked,
        "timeout_s": timeout,
        "timeout_text": duration_text(timeout),
        "expires_at": deadline.isoformat() if deadline else None,
        "expires_text": deadline.strftime("%Y-%m-%d %H:%M UTC") if deadline else "",
        "on_timeout": f"the task fails with \"no answer within {timeout:g} s\"",
        "answer_url": f"{base}/tasks/{task_id}#answer",
        "api_url": f"{base}/api/v1/tasks/{task_id}/answer",
        "cli": f'taskbench answer {task_id} "your answer"',
        "task_url": f"{base}/tasks/{task_id}",
    }
