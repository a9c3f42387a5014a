"""The Jinja environments of the templates we ship (templates/email, reports, web, prompts,
github): one per folder and set of options, made on first use.

Jinja itself loads with the first template rendered, not with the modules that render them: an
idle API imports the email, report and dashboard modules but renders nothing (~7 MB;
tests/unit/test_lazy_imports.py). Playbook templates are not ours: they render in their own
sandbox (app.kinds.playbook.templates).
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from jinja2 import Environment


@functools.cache
def environment(folder: Path, *, autoescape: bool | tuple[str, ...], strict: bool = False,
                trim_blocks: bool = False, keep_trailing_newline: bool = False) -> Environment:
    """The environment for the templates in `folder`, the same object on every call.

    autoescape: True (every template), False (plain text: prompts, Markdown) or the file
    extensions whose templates are HTML, e.g. ("html",). strict: an undefined name is an error,
    not an empty string. trim_blocks: a block tag takes its line's indentation and newline.
    """
    from jinja2 import (
        Environment,
        FileSystemLoader,
        StrictUndefined,
        Undefined,
        select_autoescape,
    )

    escape = autoescape if isinstance(autoescape, bool) else \
        select_autoescape(enabled_extensions=autoescape, default_for_string=False)
    # auto_reload off: our templates ship with the code and never change under a running
    # process, so a template is not looked at on disk again (a stat) each time it is used
    return Environment(
        loader=FileSystemLoader(folder), autoescape=escape,  # noqa: S701 - the caller's choice
        undefined=StrictUndefined if strict else Undefined, trim_blocks=trim_blocks,
        lstrip_blocks=trim_blocks, keep_trailing_newline=keep_trailing_newline,
        auto_reload=False)
