"""An MCP server over stdio, run inside the task's jail: the transport the SDK's Client uses.

The SDK's own stdio client starts the program on the host; this one starts it the way
app.sandbox.jail.jailed_process says (bubblewrap, no network, only the workspace writable, the
task's uid, rlimits and cgroup) and exchanges newline-delimited JSON-RPC over its pipes. What
the server writes is hostile: a line longer than MAX_LINE ends the connection, stderr keeps
only its last STDERR_KEEP bytes (for the `mcp_unavailable` event when it fails to start).
When the run ends: stdin is closed, the server has a moment to exit, then its tree is killed.
"""

from __future__ import annotations

import asyncio
import contextlib
from typing import Any

from app.sandbox.jail import JailedProcess

MAX_LINE = 4 * 1024 * 1024
STDERR_KEEP = 2000
GRACE_S = 2.0


class JailedStdio:
    """One jailed MCP server process; `async with` yields the (read, write) streams."""

    def __init__(self, proc: JailedProcess) -> None:
        self.proc = proc
        self._stderr = bytearray()
        self._stack = contextlib.AsyncExitStack()

    def stderr_tail(self) -> str:
        return self._stderr.decode("utf-8", "replace").strip()

    async def __aenter__(self) -> tuple[Any, Any]:
        try:
            return await self._stack.enter_async_context(self._streams())
        except BaseException:
            await asyncio.to_thread(self.proc.close)
            raise

    async def __aexit__(self, *exc: object) -> None:
        await self._stack.aclose()

    @contextlib.asynccontextmanager
    async def _streams(self) -> Any:
        import anyio
        import mcp_types
        from mcp.shared.message import SessionMessage

        child = await asyncio.create_subprocess_exec(
            *self.proc.argv, stdin=asyncio.subprocess.PIPE, stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE, env=self.proc.env, cwd="/",
            preexec_fn=self.proc.preexec, limit=MAX_LINE)  # noqa: PLW1509 - the jail's setup
        assert child.stdin and child.stdout and child.stderr
        stdin, stdout, stderr = child.stdin, child.stdout, child.stderr
        read_w, read_r = anyio.create_memory_object_stream[Any](0)
        write_w, write_r = anyio.create_memory_object_stream[Any](0)

        async def from_server() -> None:
            async with read_w:
                while True:
                    try:
                        line = await stdout.readline()
                    except (ValueError, asyncio.LimitOverrunError):
                        return  # a line over MAX_LINE: the connection ends here
                    if not line:
                        return
                    if not line.strip():
                        continue
                    item: Any
                    try:
                        item = SessionMessage(mcp_types.jsonrpc_message_adapter.validate_json(
                            line, by_name=False))
                    except ValueError as exc:
                        item = exc
                    try:
                        await read_w.send(item)
                    except (anyio.ClosedResourceError, anyio.BrokenResourceError):
                        return

        async def to_server() -> None:
            try:
                async with write_r:
                    async for message in write_r:
                        data = message.message.model_dump_json(by_alias=True, exclude_unset=True)
                        stdin.write(data.encode() + b"\n")
                        await stdin.drain()
            except (OSError, anyio.ClosedResourceError, anyio.BrokenResourceError):
                await read_w.aclose()

        async def drain_stderr() -> None:
            while chunk := await stderr.read(65536):
                self._stderr.extend(chunk)
                del self._stderr[:-STDERR_KEEP]

        async with anyio.create_task_group() as tg:
            tg.start_soon(from_server)
            tg.start_soon(to_server)
            tg.start_soon(drain_stderr)
            try:
                yield read_r, write_w
            finally:
                with anyio.CancelScope(shield=True):
                    await self._stop(child, read_r, write_w)
                tg.cancel_scope.cancel()

    async def _stop(self, child: asyncio.subprocess.Process, *streams: Any) -> None:
        for stream in streams:
            with contextlib.suppress(Exception):
                await stream.aclose()
        if child.stdin:
            with contextlib.suppress(Exception):
                child.stdin.close()
        if not await _exited(child, GRACE_S):
            with contextlib.suppress(ProcessLookupError):
                child.kill()
            await _exited(child, GRACE_S)
        await asyncio.to_thread(self.proc.close)  # the rest of its tree, then reap


async def _exited(child: asyncio.subprocess.Process, within: float) -> bool:
    """Whether the process ended within `within` seconds (polled: wait() also waits for the
    pipes, which a grandchild may hold open)."""
    loop = asyncio.get_running_loop()
    deadline = loop.time() + within
    while child.returncode is None:
        if loop.time() >= deadline:
            return False
        await asyncio.sleep(0.02)
    return True
