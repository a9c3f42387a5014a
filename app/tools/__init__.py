"""Agent tools. Importing this package registers every tool family in the one registry.

    registry.REGISTRY
    ├── files      read_file, write_file, list_files
    └── finish     finish
"""

from app.tools import files, finish  # noqa: F401  (registration by import)
from app.tools.registry import REGISTRY, ToolContext, ToolResult, dispatch, schemas, tool

__all__ = ["REGISTRY", "ToolContext", "ToolResult", "dispatch", "schemas", "tool"]
