"""Serving a fake on loopback: a threaded HTTP server on a free port, and its clean stop."""

from __future__ import annotations

import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


def serve(handler: type[BaseHTTPRequestHandler]) -> ThreadingHTTPServer:
    """Start `handler` on a free 127.0.0.1 port in a daemon thread."""
    server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


def close(server: ThreadingHTTPServer | None) -> None:
    """Stop serving and release the port (a None server is already closed)."""
    if server is not None:
        server.shutdown()
        server.server_close()
