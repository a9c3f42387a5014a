"""A real MCP server (the official SDK's MCPServer) over streamable HTTP on loopback.

    with McpCalc() as calc:      # calc.url → http://127.0.0.1:<port>/mcp
        ...

Tools: add(a, b); shout(text); flood() — a megabyte of text; broken() — a tool error;
picture() — an image, which must be described, not dumped; twin.name and twin_name — two names
that are one once made safe for a model's tool list.
"""

from __future__ import annotations

import socket
import threading
import time
from typing import Any

import uvicorn
from mcp.server.mcpserver import MCPServer
from mcp.server.mcpserver.utilities.types import Image


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def build_server() -> Any:
    server = MCPServer("calc")

    @server.tool()
    def add(a: int, b: int) -> int:
        """Add two integers."""
        return a + b

    @server.tool()
    def shout(text: str) -> str:
        """The text in capitals."""
        return text.upper()

    @server.tool()
    def flood() -> str:
        """A very long answer."""
        return "spam " * 200_000

    @server.tool()
    def broken() -> str:
        """Always fails."""
        raise ValueError("the calculator caught fire")

    @server.tool(name="twin.name")
    def twin_dot() -> str:
        """The first of two tools whose names differ only in a character tools cannot carry."""
        return "dot"

    @server.tool(name="twin_name")
    def twin_underscore() -> str:
        """The second: its safe name is the same as the first one's."""
        return "underscore"

    @server.tool()
    def picture() -> Image:
        """A tiny PNG."""
        return Image(data=b"\x89PNG\r\n\x1a\n" + b"\x00" * 64, format="png")

    return server


class McpCalc:
    def __init__(self) -> None:
        self.port = _free_port()
        self.url = f"http://127.0.0.1:{self.port}/mcp"
        app = build_server().streamable_http_app()
        self._server = uvicorn.Server(uvicorn.Config(app, host="127.0.0.1", port=self.port,
                                                     log_level="warning", lifespan="on"))
        self._thread = threading.Thread(target=self._server.run, daemon=True)

    def __enter__(self) -> McpCalc:
        self._thread.start()
        deadline = time.monotonic() + 20
        while not self._server.started:
            if time.monotonic() > deadline:
                raise RuntimeError("the MCP server did not start")
            time.sleep(0.05)
        return self

    def __exit__(self, *_exc: Any) -> None:
        self._server.should_exit = True
        self._thread.join(10)


# The same kind of server over stdio, as a program the agent's config names: it runs inside
# the task's jail, so it is passed inline (`python -c`) with the host interpreter, which the jail
# shows read-only. probe() reports what the server can see from in there.
STDIO_MARK = "taskbench-stdio-fake-server"  # in its command line: tests look for leftovers
STDIO_SERVER = '''
# taskbench-stdio-fake-server
import json, os, socket
from mcp.server.mcpserver import MCPServer

server = MCPServer("tools")

@server.tool()
def add(a: int, b: int) -> int:
    """Add two integers."""
    return a + b

@server.tool()
def flood() -> str:
    """A very long answer."""
    return "spam " * 200_000

@server.tool()
def probe(port: int) -> str:
    """Where the server runs: uid, cwd, host paths it sees, whether it reaches the host."""
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
        net = True
    except OSError:
        net = False
    with open("made-by-mcp.txt", "w") as f:
        f.write("hello")
    return json.dumps({"uid": os.getuid(), "cwd": os.getcwd(), "net": net,
                       "sees_work": os.path.exists("/work"),
                       "sees_etc": os.path.exists("/etc/hostname"),
                       "env": sorted(k for k in os.environ if not k.startswith("GIT_"))})

server.run("stdio")
'''


def stdio_command(source: str = STDIO_SERVER) -> list[str]:
    """The argv of a jailed stdio MCP server running `source`."""
    from app.sandbox.jail import host_python

    return [host_python()[0], "-c", source]
