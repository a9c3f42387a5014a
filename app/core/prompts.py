"""Prompts are Jinja templates in templates/prompts/; this renders them."""

from __future__ import annotations

from functools import lru_cache
from typing import Any

from jinja2 import Environment, FileSystemLoader, StrictUndefined

from app.core.config import TEMPLATES_DIR


@lru_cache
def _env() -> Environment:
    return Environment(  # noqa: S701 - prompts are plain text, not HTML
        loader=FileSystemLoader(TEMPLATES_DIR / "prompts"),
        undefined=StrictUndefined,
        keep_trailing_newline=False,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def render_prompt(name: str, **context: Any) -> str:
    """Render templates/prompts/<name>.j2."""
    return _env().get_template(f"{name}.j2").render(**context).strip()
