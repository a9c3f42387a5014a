"""Agent tools. Importing this package registers every tool family in the one registry.

    registry.REGISTRY
    ├── files      read_file, write_file, list_files
    ├── commands   run_command        (allow-list + argument rules, then the jail)
    ├── reports    make_report
    ├── mail       send_email         (notify list / allowed domains, rate limited, outbox)
    ├── github     open_pull_request
    └── finish     finish
"""

from app.tools import commands, files, finish  # noqa: F401  (registration by import)
from app.tools import github, mail, reports  # noqa: F401  (registration by import)
from app.tools.registry import REGISTRY, ToolContext, ToolResult, dispatch, schemas, tool

__all__ = ["REGISTRY", "ToolContext", "ToolResult", "dispatch", "schemas", "tool"]
