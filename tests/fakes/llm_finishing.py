"""A provider that answers every chat completion with `finish` at once, as cheaply as a server
can: the benchmarks' no-op model.

The throughput benchmarks share the machine's cores with their fake provider, which a real
provider's CPU never does. ScriptedLLM (tests/fakes/llm_server.py) spends ~1 ms of CPU a call
on its thread per connection, its header parsing and its request log; this one parses what it
must (the request line, Content-Length, the JSON body for the model's name) on one event loop in
a process of its own, and records nothing.

It speaks what the product's client needs of the real thing: HTTP/1.1 keep-alive, a
Content-Length body, the chat-completions reply ScriptedLLM's default responder gives (a
`finish` tool call with its id and usage), 404 for any other path.

    with FinishingLLM() as llm:
        os.environ["TASKBENCH_LLM_BASE_URL"] = llm.url
"""

from __future__ import annotations

import asyncio
import itertools
import json
import multiprocessing
import socket
import time
from typing import Any

PROMPT_TOKENS, COMPLETION_TOKENS = 10, 5


def completion(model: str, n: int) -> bytes:
    """The JSON of one `finish` reply."""
    return json.dumps({
        "id": f"chatcmpl-{n}", "object": "chat.completion", "created": int(time.time()),
        "model": model,
        "choices": [{"index": 0, "finish_reason": "tool_calls", "message": {
            "role": "assistant", "content": None, "tool_calls": [{
                "id": f"call_{n}", "type": "function",
                "function": {"name": "finish", "arguments": '{"summary": "done"}'}}]}}],
        "usage": {"prompt_tokens": PROMPT_TOKENS, "completion_tokens": COMPLETION_TOKENS,
                  "total_tokens": PROMPT_TOKENS + COMPLETION_TOKENS},
    }).encode()


def response(status: str, body: bytes) -> bytes:
    return (f"HTTP/1.1 {status}\r\ncontent-type: application/json\r\n"
            f"content-length: {len(body)}\r\n\r\n").encode() + body


class _Connection(asyncio.Protocol):
    ids = itertools.count(1)

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport: Any = transport
        self.buffer = b""
        transport.get_extra_info("socket").setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)

    def data_received(self, data: bytes) -> None:
        self.buffer += data
        while True:
            end = self.buffer.find(b"\r\n\r\n")
            if end < 0:
                return
            head = self.buffer[:end].decode("latin-1").split("\r\n")
            length = 0
            for line in head[1:]:
                name, _, value = line.partition(":")
                if name.strip().lower() == "content-length":
                    length = int(value.strip())
            start = end + 4
            if len(self.buffer) < start + length:
                return
            body, self.buffer = self.buffer[start:start + length], self.buffer[start + length:]
            self.transport.write(self.answer(head[0], body))

    def answer(self, request_line: str, body: bytes) -> bytes:
        method, path = (request_line.split(" ") + ["", ""])[:2]
        if method != "POST" or not path.rstrip("/").endswith("/chat/completions"):
            return response("404 Not Found", b'{"error": {"message": "not found"}}')
        try:
            model = str(json.loads(body).get("model") or "scripted")
        except (ValueError, AttributeError):
            return response("400 Bad Request", b'{"error": {"message": "the body is not JSON"}}')
        return response("200 OK", completion(model, next(self.ids)))


def _serve(sock: socket.socket) -> None:
    async def main() -> None:
        server = await asyncio.get_running_loop().create_server(_Connection, sock=sock)
        await server.serve_forever()

    asyncio.run(main())


class FinishingLLM:
    """The server in a forked process of its own, on a free loopback port."""

    def __init__(self) -> None:
        self._sock = socket.socket()
        self._sock.bind(("127.0.0.1", 0))
        self._sock.listen(128)
        self._process = multiprocessing.get_context("fork").Process(
            target=_serve, args=(self._sock,), daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._sock.getsockname()[1]}/v1"

    @property
    def pid(self) -> int | None:
        return self._process.pid

    def start(self) -> FinishingLLM:
        self._process.start()
        return self

    def stop(self) -> None:
        if self._process.is_alive():
            self._process.kill()
            self._process.join(timeout=10)
        self._sock.close()

    def __enter__(self) -> FinishingLLM:
        return self.start()

    def __exit__(self, *_exc: object) -> None:
        self.stop()
