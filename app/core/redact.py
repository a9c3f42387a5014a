"""Secret redaction: every string bound for an event, a log line, a prompt or a PR body."""

from __future__ import annotations

import re
from typing import Any

from app.core.config import get_settings

MASK = "[redacted]"
# Shapes of well-known credentials, redacted even when they are not our own configured secrets.
PATTERNS = re.compile(
    r"(sk-[A-Za-z0-9_-]{20,}|gh[pousr]_[A-Za-z0-9]{30,}|github_pat_[A-Za-z0-9_]{30,}"
    r"|AKIA[0-9A-Z]{16}|tb_[A-Za-z0-9_-]{30,}|xox[baprs]-[A-Za-z0-9-]{10,})"
)


def redact(text: str, extra: list[str] | None = None) -> str:
    """`text` with configured secrets and credential-shaped strings masked."""
    if not text:
        return text
    return _masked(text, get_settings().secrets() + (extra or []))


def redact_obj(value: Any) -> Any:
    """Redact every string inside a JSON-like value."""
    return _walk(value, get_settings().secrets())  # looked up once, not once a string


def _masked(text: str, secrets: list[str]) -> str:
    for secret in secrets:
        if secret and secret in text:
            text = text.replace(secret, MASK)
    return PATTERNS.sub(MASK, text)


def _walk(value: Any, secrets: list[str]) -> Any:
    if isinstance(value, str):
        return _masked(value, secrets) if value else value
    if isinstance(value, dict):
        return {k: _walk(v, secrets) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_walk(v, secrets) for v in value]
    return value
