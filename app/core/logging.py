"""Logging: JSON lines when stderr is not a terminal, the task and agent on every line, secrets
masked. `configure()` once at process start; `bind(task_id=…, agent=…)` around a task's work."""

from __future__ import annotations

import contextlib
import contextvars
import json
import logging
import sys
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from app.core.redact import redact

task_id_var: contextvars.ContextVar[int | None] = contextvars.ContextVar("task_id", default=None)
agent_var: contextvars.ContextVar[str | None] = contextvars.ContextVar("agent", default=None)


@contextlib.contextmanager
def bind(*, task_id: int | None = None, agent: str | None = None) -> Iterator[None]:
    """Tag every log line in this context (and tasks it spawns) with the task and agent."""
    task_token, agent_token = task_id_var.set(task_id), agent_var.set(agent)
    try:
        yield
    finally:
        agent_var.reset(agent_token)
        task_id_var.reset(task_token)


class ContextFilter(logging.Filter):
    """Copies the context variables onto each record and masks secrets in its message."""

    def filter(self, record: logging.LogRecord) -> bool:
        record.task_id = task_id_var.get()
        record.agent = agent_var.get()
        record.msg = redact(record.getMessage())
        record.args = None
        return True


class JsonFormatter(logging.Formatter):
    """One JSON object per line: time, level, logger, message, task_id, agent, exc."""

    def format(self, record: logging.LogRecord) -> str:
        entry: dict[str, Any] = {
            "ts": datetime.fromtimestamp(record.created, UTC).isoformat(),
            "level": record.levelname, "logger": record.name, "msg": record.getMessage(),
            "task_id": getattr(record, "task_id", None), "agent": getattr(record, "agent", None),
        }
        if record.exc_info:
            entry["exc"] = redact(self.formatException(record.exc_info))
        return json.dumps(entry, default=str)


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        line = super().format(record)
        where = getattr(record, "task_id", None)
        return f"{line} [task={where} agent={getattr(record, 'agent', None)}]" if where else line


def configure(*, json_logs: bool | None = None, level: str = "INFO") -> None:
    """Install one stderr handler on the root logger (idempotent)."""
    if json_logs is None:
        json_logs = not sys.stderr.isatty()
    handler = logging.StreamHandler(sys.stderr)
    handler.addFilter(ContextFilter())
    handler.setFormatter(JsonFormatter() if json_logs
                         else TextFormatter("%(asctime)s %(levelname)s %(name)s: %(message)s"))
    root = logging.getLogger()
    for old in [h for h in root.handlers if getattr(h, "_taskbench", False)]:
        root.removeHandler(old)
    handler._taskbench = True  # type: ignore[attr-defined]
    root.addHandler(handler)
    root.setLevel(level)
