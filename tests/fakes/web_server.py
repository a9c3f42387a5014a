"""Loopback web pages for fetch_url tests: an article, a big page and redirects.

    srv = WebServer().start()      # srv.url("/article")
    srv.redirect_to = "http://127.0.0.1:9/private"   # target of /redirect
"""

from __future__ import annotations

import contextlib
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ARTICLE = (b"<!doctype html><html><head><title>Bubblewrap notes</title>"
           b"<script>var secret='do-not-show';</script><style>p{}</style></head>"
           b"<body><h1>Jails</h1><p>Namespaces &amp; limits keep tools honest.</p></body></html>")


class WebServer:
    """A threaded HTTP server on 127.0.0.1 with a few fixed routes."""

    def __init__(self) -> None:
        self.redirect_to = "/article"
        self.requests: list[str] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
                outer.requests.append(self.path)
                if self.path == "/article":
                    self._send(200, ARTICLE, "text/html; charset=utf-8")
                elif self.path == "/big":
                    self._send(200, b"x" * (5 * 1024 * 1024), "text/plain")
                elif self.path == "/redirect":
                    self.send_response(302)
                    self.send_header("Location", outer.redirect_to)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                else:
                    self._send(404, b"not found", "text/plain")

            def _send(self, code: int, body: bytes, ctype: str) -> None:
                self.send_response(code)
                self.send_header("Content-Type", ctype)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                with contextlib.suppress(ConnectionError):  # client stopped at its size cap
                    self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]

    def start(self) -> WebServer:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"
