"""Agent tools. Importing this package registers every tool family in the one registry.

    registry.REGISTRY
    ├── files      read_file, write_file, list_files
    ├── edits      view_file, edit_file, insert_lines, undo_edit   (exact snippets, undo, diffs)
    ├── commands   run_command        (allow-list + argument rules, then the jail)
    ├── python     run_python         (the task's venv, in the jail)
    ├── packages   pip_install        (uv on the host, into the venv; policy-checked)
    ├── web        web_search, fetch_url   (netguard vets every hop; search.py caches)
    ├── reports    make_report
    ├── mail       send_email         (notify list / allowed domains, rate limited, outbox)
    ├── github     open_pull_request
    ├── delegate   delegate           (a subtask; the runner's `delegate` service creates it)
    ├── messaging  message_task       (to the parent or a subtask, on the message channel)
    ├── ask        ask_user           (waiting_input until a person answers)
    └── finish     finish
"""

from app.tools import (  # noqa: F401  (registration by import)
    ask,
    commands,
    delegate,
    edits,
    files,
    finish,
    github,
    mail,
    messaging,
    packages,
    python,
    reports,
    web,
)
from app.tools.registry import REGISTRY, ToolContext, ToolResult, dispatch, schemas, tool

__all__ = ["REGISTRY", "ToolContext", "ToolResult", "dispatch", "schemas", "tool"]
