"""A TCP relay on loopback that can hold back the server's replies: a statement reaches the
database and commits there while the client is still waiting for its answer."""

from __future__ import annotations

import asyncio
import contextlib


class ReplyHoldingProxy:
    """Relays 127.0.0.1:<port> to `host`:`port`; while `held`, bytes from the server are kept
    back (in order) and sent on at `release()`. Runs on the caller's event loop."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.target_port = host, port
        self.held = False
        self._released = asyncio.Event()
        self._released.set()
        self._server: asyncio.Server | None = None
        self._pipes: set[asyncio.Task[None]] = set()

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._serve, "127.0.0.1", 0)
        return int(self._server.sockets[0].getsockname()[1])

    def hold(self) -> None:
        self.held = True
        self._released.clear()

    def release(self) -> None:
        self.held = False
        self._released.set()

    async def close(self) -> None:
        self.release()
        if self._server is not None:
            self._server.close()
        for pipe in list(self._pipes):
            pipe.cancel()
        await asyncio.gather(*self._pipes, return_exceptions=True)

    async def _serve(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter
                     ) -> None:
        server_r, server_w = await asyncio.open_connection(self.host, self.target_port)
        pipes = {asyncio.ensure_future(self._pipe(client_r, server_w, replies=False)),
                 asyncio.ensure_future(self._pipe(server_r, client_w, replies=True))}
        self._pipes |= pipes
        await asyncio.wait(pipes, return_when=asyncio.FIRST_COMPLETED)
        for pipe in pipes:
            pipe.cancel()
        self._pipes -= pipes
        for writer in (client_w, server_w):
            with contextlib.suppress(Exception):
                writer.close()

    async def _pipe(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter, *,
                    replies: bool) -> None:
        with contextlib.suppress(ConnectionError):
            while data := await reader.read(65536):
                if replies:
                    await self._released.wait()
                writer.write(data)
                await writer.drain()
