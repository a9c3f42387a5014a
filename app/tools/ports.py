"""Ports: what a tool may call beyond its workspace, set by whoever builds the ToolContext.

A port left as None is not offered in this task (a tool needing it says so to the model). The
runner wires `delegate` and `message_task` to the delegation module; tests point `engine`,
`resolver` and `http_transport` at loopback fakes.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from sqlalchemy.ext.asyncio import AsyncEngine

from app.sandbox.netguard import Resolver
from app.sandbox.shell import Shell

if TYPE_CHECKING:
    import httpx

# (title, description, complexity, shared_workspace) -> the subtask's id
Delegate = Callable[[str, str, int, bool], Awaitable[int]]
# (task id, content) -> what the model is told
MessageTask = Callable[[int, str], Awaitable[str]]


@dataclass
class Ports:
    delegate: Delegate | None = None
    message_task: MessageTask | None = None
    engine: AsyncEngine | None = None  # the database the mail tool writes to (default: settings')
    resolver: Resolver | None = None  # DNS for web fetches (default: the system's)
    http_transport: httpx.AsyncBaseTransport | None = None  # for web fetches (default: httpx's)
    shell: Shell = field(default_factory=Shell)  # the task's persistent shell (app.sandbox.shell)
