"""MCP servers as tool sources, per agent (`config.mcp_servers`), through the official SDK.

    config.mcp_servers: [{name: "calc", transport: "http", url: "https://…/mcp",
                          headers: {…}, timeout_s: 30}]

Each server's tools join the ones offered to the model as `mcp__<server>__<tool>` (letters,
digits, `_` and `-`, at most 64 characters), with their own JSON schemas; the agent's
`allowed_tools` decides which may be called (a full name, or `mcp__<server>__*`). Servers are
reached only through the SSRF guard (app.sandbox.netguard: a private or loopback address is
refused unless `fetch_allow_hosts` allows it, as for fetch_url). A server that cannot be
reached or listed is an `mcp_unavailable` event and the task goes on without it. What a tool
returns is hostile input like any tool output: text only (images and resources are described,
never dumped), capped by the registry, an MCP error result is a tool error. Calls time out.

A stdio server (`{name, transport: "stdio", command: [argv…], env: {…}}`) runs inside the
task's jail (app.tools.mcp_stdio over app.sandbox.jail.jailed_process): no network, only the
workspace writable, the task's uid, for the whole run. Where bubblewrap is not in use it is not
started (an `mcp_unavailable` event). Its `env` is visible to the task's own commands (same
jail, same uid): it is no place for a secret.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from typing import Any

from app.core.config import Settings
from app.sandbox.envpolicy import env_name_allowed, redact
from app.sandbox.limits import Limits
from app.sandbox.netguard import UrlRefused, vet_url
from app.sandbox.workspace import Workspace
from app.tools.errors import ToolError
from app.tools.registry import Dispatched, truncate

PREFIX = "mcp__"
MAX_SERVERS = 10
MAX_TOOLS_PER_SERVER = 64
MAX_ARGS = 64
MAX_ARGV_CHARS = 32_000
MAX_ENV = 32
DEFAULT_TIMEOUT_S = 30.0
# a stdio server lives for the whole run: more CPU time than one command, the rest as for one
STDIO_LIMITS = Limits(cpu_s=600)
_UNSAFE = re.compile(r"[^A-Za-z0-9_-]")
# no "__" in a server's name: it separates server and tool in `mcp__<server>__<tool>`
_SERVER_NAME = re.compile(r"^[a-z](?:[a-z0-9-]|_(?!_)){0,23}$")


class ConfigError(ValueError):
    """`config.mcp_servers` is malformed; `loc` says where (relative to `config`)."""

    def __init__(self, loc: list[str | int], msg: str) -> None:
        super().__init__(msg)
        self.loc = loc


@dataclass(frozen=True)
class ServerSpec:
    name: str
    url: str = ""  # http
    headers: dict[str, str] = field(default_factory=dict)
    timeout_s: float = DEFAULT_TIMEOUT_S
    transport: str = "http"
    command: list[str] = field(default_factory=list)  # stdio: argv, run in the task's jail
    env: dict[str, str] = field(default_factory=dict)


def parse_servers(raw: Any) -> list[ServerSpec]:
    """The servers an agent's config names; ConfigError naming the field when malformed."""
    if raw is None:
        return []
    if not isinstance(raw, list) or len(raw) > MAX_SERVERS:
        raise ConfigError(["mcp_servers"], f"a list of at most {MAX_SERVERS} servers")
    specs, seen = [], set()
    for i, item in enumerate(raw):
        loc: list[str | int] = ["mcp_servers", i]
        if not isinstance(item, dict):
            raise ConfigError(loc, "each server is an object {name, transport, url}")
        name = item.get("name")
        if not isinstance(name, str) or not _SERVER_NAME.match(name) or name in seen:
            raise ConfigError([*loc, "name"], "a unique name: lowercase letters, digits, _ "
                              "(never two in a row) and -, starting with a letter, at most 24 "
                              "characters")
        seen.add(name)
        transport = item.get("transport", "http")
        if transport not in ("http", "stdio"):
            raise ConfigError([*loc, "transport"], "transport is `http` or `stdio`")
        timeout = item.get("timeout_s", DEFAULT_TIMEOUT_S)
        if not isinstance(timeout, int | float) or isinstance(timeout, bool) \
                or not 1 <= timeout <= 300:
            raise ConfigError([*loc, "timeout_s"], "seconds, 1 to 300")
        if transport == "stdio":
            specs.append(_stdio_spec(item, loc, name, float(timeout)))
            continue
        url = item.get("url")
        if not isinstance(url, str) or not url.startswith(("http://", "https://")) \
                or len(url) > 2000:
            raise ConfigError([*loc, "url"], "an http(s) URL of the server's MCP endpoint")
        headers = item.get("headers") or {}
        if not isinstance(headers, dict) or not all(
                isinstance(k, str) and isinstance(v, str) and "\n" not in k + v
                for k, v in headers.items()):
            raise ConfigError([*loc, "headers"], "an object of header names to string values")
        extra = set(item) - {"name", "transport", "url", "headers", "timeout_s"}
        if extra:
            raise ConfigError([*loc, sorted(extra)[0]], "unknown field (for an http server)")
        specs.append(ServerSpec(name, url, dict(headers), float(timeout)))
    return specs


def _stdio_spec(item: dict[str, Any], loc: list[str | int], name: str,
                timeout: float) -> ServerSpec:
    command = item.get("command")
    if not isinstance(command, list) or not 1 <= len(command) <= MAX_ARGS or not all(
            isinstance(a, str) and a and "\x00" not in a for a in command) \
            or sum(len(a) for a in command) > MAX_ARGV_CHARS:
        raise ConfigError([*loc, "command"], f"the server's argv: a list of 1 to {MAX_ARGS} "
                          "non-empty strings (no shell), run inside the task's jail")
    env = item.get("env") or {}
    if not isinstance(env, dict) or len(env) > MAX_ENV:
        raise ConfigError([*loc, "env"], f"an object of at most {MAX_ENV} variables")
    for key, value in env.items():
        if not isinstance(key, str) or not env_name_allowed(key) or not isinstance(value, str) \
                or "\x00" in value or len(value) > 4000:
            raise ConfigError([*loc, "env", str(key)[:64]], "a variable name the jail accepts "
                              "(not PATH, HOME, LD_*, PYTHON*…) and a string value")
    extra = set(item) - {"name", "transport", "command", "env", "timeout_s"}
    if extra:
        raise ConfigError([*loc, sorted(extra)[0]], "unknown field (for a stdio server)")
    return ServerSpec(name, timeout_s=timeout, transport="stdio", command=list(command),
                      env=dict(env))


def tool_name(server: str, tool: str) -> str:
    return f"{PREFIX}{server}__{_UNSAFE.sub('_', tool)}"[:64]


def allowed(name: str, allow: list[str] | None) -> bool:
    """An MCP tool may be called when the agent's allow-list is empty (everything) or names it
    or its server (`mcp__<server>__*`)."""
    if not allow:
        return True
    server = name.split("__", 2)[1] if name.count("__") >= 2 else ""
    return name in allow or f"{PREFIX}{server}__*" in allow


def describe(result: Any) -> str:
    """An MCP tool result as text for the model: text parts as they are, anything else named."""
    parts = []
    for item in getattr(result, "content", None) or []:
        kind = getattr(item, "type", "")
        if kind == "text":
            parts.append(str(getattr(item, "text", "")))
        elif kind in ("image", "audio"):
            size = len(getattr(item, "data", "") or "") * 3 // 4
            parts.append(f"[{kind}: {getattr(item, 'mime_type', None) or '?'}, ~{size} bytes, "
                         "not shown]")
        elif kind in ("resource", "resource_link"):
            uri = getattr(item, "uri", None) or getattr(getattr(item, "resource", None), "uri", "")
            parts.append(f"[resource: {str(uri)[:300]}]")
        else:
            parts.append(f"[{kind or 'content'} not shown]")
    if not parts and getattr(result, "structured_content", None) is not None:
        parts.append(json.dumps(result.structured_content, default=str)[:20_000])
    return "\n".join(parts) or "(no content)"


class McpTools:
    """The MCP servers of one run: their tools' schemas, and calls routed to them."""

    def __init__(self, settings: Settings, specs: list[ServerSpec],
                 workspace: Workspace | None = None) -> None:
        self.settings = settings
        self.specs = specs
        self.workspace = workspace
        self.schemas: list[dict[str, Any]] = []
        self.routes: dict[str, tuple[Any, str, float]] = {}  # name → (client, tool, timeout)
        self.unavailable: list[dict[str, str]] = []
        self._stack = contextlib.AsyncExitStack()

    async def start(self) -> None:
        from mcp import Client  # the SDK is loaded only by runs that use MCP servers

        for spec in self.specs:
            stdio = None
            try:
                if spec.transport == "stdio":
                    stdio = await self._jailed(spec)
                    transport: Any = stdio
                else:
                    await vet_url(spec.url, self.settings.fetch_allow_hosts, None)
                    transport = await self._transport(spec)
                client = Client(transport, read_timeout_seconds=spec.timeout_s)
                entered = await asyncio.wait_for(self._stack.enter_async_context(client),
                                                 spec.timeout_s)
                listed = await asyncio.wait_for(entered.list_tools(), spec.timeout_s)
            except UrlRefused as exc:
                self.unavailable.append({"server": spec.name, "error": f"refused: {exc}"})
                continue
            except Exception as exc:  # noqa: BLE001 - a broken server must not stop the task
                cause: BaseException = exc
                while isinstance(cause, BaseExceptionGroup) and cause.exceptions:
                    cause = cause.exceptions[0]  # the SDK's task groups wrap the real failure
                why = f"{type(cause).__name__}: {str(cause)[:300]}"
                if stdio is not None and stdio.stderr_tail():
                    why += f"\nstderr: {stdio.stderr_tail()[-1000:]}"
                self.unavailable.append({"server": spec.name,
                                         "error": redact(why, self.settings.secrets())})
                continue
            for tool in list(listed.tools)[:MAX_TOOLS_PER_SERVER]:
                name = tool_name(spec.name, tool.name)
                if name in self.routes:  # `a.b` and `a_b` (or two long names cut at 64)
                    self.unavailable.append({"server": spec.name, "error": (
                        f"tool {str(tool.name)[:100]!r} left out: its name {name} is taken by "
                        f"the server's tool {self.routes[name][1][:100]!r}")})
                    continue
                schema = getattr(tool, "input_schema", None) or getattr(tool, "inputSchema", None)
                self.routes[name] = (entered, tool.name, spec.timeout_s)
                self.schemas.append({"type": "function", "function": {
                    "name": name,
                    "description": f"[MCP server {spec.name}] {str(tool.description or '')[:1000]}",
                    "parameters": schema if isinstance(schema, dict) else
                    {"type": "object", "properties": {}}}})

    async def _jailed(self, spec: ServerSpec) -> Any:
        """The stdio server's transport: its program started in the task's jail when the
        client connects (SandboxUnavailable when the jail is not bubblewrap)."""
        from app.sandbox.jail import jailed_process
        from app.tools.mcp_stdio import JailedStdio

        if self.workspace is None:
            raise RuntimeError("a stdio server needs the task's workspace")
        proc = await asyncio.to_thread(jailed_process, spec.command, workspace=self.workspace,
                                       settings=self.settings, env=spec.env,
                                       limits=STDIO_LIMITS)
        return JailedStdio(proc)

    async def _transport(self, spec: ServerSpec) -> Any:
        """The server's URL, or with its headers (e.g. a token) a transport that sends them to
        this server only; its HTTP client is closed with the run."""
        if not spec.headers:
            return spec.url
        import httpx2
        from mcp.client.streamable_http import streamable_http_client

        http = await self._stack.enter_async_context(
            httpx2.AsyncClient(headers=spec.headers, timeout=spec.timeout_s))
        return streamable_http_client(spec.url, http_client=http)

    def offered(self, allow: list[str] | None) -> list[dict[str, Any]]:
        return [s for s in self.schemas if allowed(s["function"]["name"], allow)]

    async def dispatch(self, name: str, raw_args: str | dict[str, Any],
                       allow: list[str] | None) -> Dispatched:
        import time

        start = time.perf_counter()

        def done(ok: bool, output: str, refused: bool = False) -> Dispatched:
            return Dispatched(name, ok, truncate(output), {"mcp": True},
                              (time.perf_counter() - start) * 1000, refused)

        if name not in self.routes:
            return done(False, f"Error: unknown tool {name!r}")
        if not allowed(name, allow):
            return done(False, f"Refused: {name} is not on this agent's allow-list", True)
        client, tool, timeout = self.routes[name]
        try:
            args = json.loads(raw_args or "{}") if isinstance(raw_args, str) else raw_args
            if not isinstance(args, dict):
                raise ToolError("tool arguments must be a JSON object")
            result = await asyncio.wait_for(client.call_tool(tool, args), timeout)
        except json.JSONDecodeError as exc:
            return done(False, f"Error: arguments are not valid JSON ({exc.msg}); try again")
        except ToolError as exc:
            return done(False, f"Error: {exc}")
        except TimeoutError:
            return done(False, f"Error: the MCP server did not answer within {timeout:g} s")
        except Exception as exc:  # noqa: BLE001 - the server's failure is the model's to read
            return done(False, f"Error: the MCP server failed: {type(exc).__name__}: "
                        f"{str(exc)[:500]}")
        text = describe(result)
        if getattr(result, "is_error", False):
            return done(False, f"Error from the MCP tool: {text}")
        return done(True, text)

    async def close(self) -> None:
        with contextlib.suppress(Exception):
            await self._stack.aclose()


@contextlib.asynccontextmanager
async def mcp_tools(settings: Settings, config: dict[str, Any],
                    workspace: Workspace | None = None) -> AsyncIterator[McpTools | None]:
    """The run's MCP tools (None when the agent names no server), closed when the run ends."""
    try:
        specs = parse_servers((config or {}).get("mcp_servers"))
    except ConfigError:
        specs = []  # refused when the agent was saved; an older row is simply ignored
    if not specs:
        yield None
        return
    tools = McpTools(settings, specs, workspace)
    try:
        await tools.start()
        yield tools
    finally:
        await tools.close()
