"""Prompts are Jinja templates in templates/prompts/; this renders them."""

from __future__ import annotations

from typing import Any

from app.core.config import TEMPLATES_DIR
from app.core.jinja import environment


def render_prompt(name: str, **context: Any) -> str:
    """Render templates/prompts/<name>.j2 (plain text: no escaping; an undefined name fails)."""
    prompts = environment(TEMPLATES_DIR / "prompts", autoescape=False, strict=True,
                          trim_blocks=True)
    return prompts.get_template(f"{name}.j2").render(**context).strip()
