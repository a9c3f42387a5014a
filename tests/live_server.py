"""A real uvicorn server for the configured app, in a background thread (SSE, WS, browser)."""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import uvicorn


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@contextmanager
def live_server(wrap: Callable[[Any], Any] | None = None) -> Iterator[str]:
    """Serve create_app(sweeper=False) (inside `wrap`, an ASGI middleware, if given) on
    127.0.0.1:<free port>; yields the base URL."""
    from app.main import create_app

    port = free_port()
    app = create_app(sweeper=False)
    config = uvicorn.Config(wrap(app) if wrap else app, host="127.0.0.1", port=port,
                            log_level="warning", ws="websockets-sansio", lifespan="on")
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, daemon=True)
    thread.start()
    deadline = time.monotonic() + 20
    while not server.started:
        if time.monotonic() > deadline or not thread.is_alive():
            raise RuntimeError("uvicorn did not start")
        time.sleep(0.02)
    try:
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)
