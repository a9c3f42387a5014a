"""Loopback web pages for fetch_url tests: an article, a big page, redirects, and the nasty
rest of the web: a real PDF (and one served as text/html), an encrypted and a broken PDF, JSON,
CSV, a PNG, a body that drips 10 bytes a second forever.

    srv = WebServer().start()      # srv.url("/article")
    srv.redirect_to = "http://127.0.0.1:9/private"   # target of /redirect
"""

from __future__ import annotations

import contextlib
import functools
import io
import json
import struct
import threading
import time
import zlib
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

ARTICLE = (b"<!doctype html><html><head><title>Bubblewrap notes</title>"
           b"<script>var secret='do-not-show';</script><style>p{}</style></head>"
           b"<body><h1>Jails</h1><p>Namespaces &amp; limits keep tools honest.</p></body></html>")


REPORT_HTML = ("<html><head><title>Quarterly figures</title></head><body>"
               "<h1>Quarterly figures</h1><p>Revenue grew 12 percent in the third quarter.</p>"
               "<p style='page-break-before: always'>Costs fell by 3 percent.</p></body></html>")
DATA = {"name": "sensors", "count": 3,
        "readings": [{"id": i, "celsius": 20 + i} for i in range(3)]}
TABLE = "city,population\nOslo,709000\nBergen,291000\nTromso,77000\n"


@functools.cache
def report_pdf() -> bytes:
    """A real two-page PDF with text (WeasyPrint, as the product's own reports)."""
    from weasyprint import HTML

    return bytes(HTML(string=REPORT_HTML).write_pdf())


@functools.cache
def encrypted_pdf() -> bytes:
    from pypdf import PdfWriter

    writer = PdfWriter()
    writer.add_blank_page(200, 200)
    writer.encrypt("secret")
    out = io.BytesIO()
    writer.write(out)
    return out.getvalue()


def png(width: int = 3, height: int = 2) -> bytes:
    """A valid PNG of `width`×`height` grey pixels."""
    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))
    rows = b"".join(b"\x00" + b"\x80" * width for _ in range(height))
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0,
                                                                0, 0))
            + chunk(b"IDAT", zlib.compress(rows)) + chunk(b"IEND", b""))


class WebServer:
    """A threaded HTTP server on 127.0.0.1 with a few fixed routes."""

    def __init__(self) -> None:
        self.redirect_to = "/article"
        self.requests: list[str] = []
        self.stopped = threading.Event()
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
                elif self.path == "/report.pdf":
                    self._send(200, report_pdf(), "application/pdf")
                elif self.path == "/disguised":  # a PDF served as a web page
                    self._send(200, report_pdf(), "text/html; charset=utf-8")
                elif self.path == "/encrypted.pdf":
                    self._send(200, encrypted_pdf(), "application/pdf")
                elif self.path == "/broken.pdf":
                    self._send(200, b"%PDF-1.7\n1 0 obj << /Type /Catalog >>\ngarbage",
                               "application/pdf")
                elif self.path == "/data.json":
                    self._send(200, json.dumps(DATA).encode(), "application/json")
                elif self.path == "/table.csv":
                    self._send(200, TABLE.encode(), "text/csv")
                elif self.path == "/image.png":
                    self._send(200, png(), "image/png")
                elif self.path.startswith("/download"):  # a hostile file name
                    body = png()
                    self.send_response(200)
                    self.send_header("Content-Type", "application/octet-stream")
                    self.send_header("Content-Disposition",
                                     'attachment; filename="../../../etc/cron.d/evil"')
                    self.send_header("Content-Length", str(len(body)))
                    self.end_headers()
                    self.wfile.write(body)
                elif self.path == "/drip":  # 10 bytes a second, never ending
                    self.send_response(200)
                    self.send_header("Content-Type", "text/plain")
                    self.end_headers()
                    with contextlib.suppress(ConnectionError, OSError):
                        while not outer.stopped.is_set():
                            self.wfile.write(b"0123456789")
                            self.wfile.flush()
                            time.sleep(1)
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
        self.stopped.set()
        self.server.shutdown()
        self.server.server_close()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"
