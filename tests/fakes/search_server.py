"""A SearxNG-style JSON search endpoint on loopback: GET /search?q=…&format=json."""

from __future__ import annotations

import json
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from urllib.parse import parse_qs, urlsplit


class SearchServer:
    """Answers every query with three fixed results naming the query; counts requests."""

    def __init__(self) -> None:
        self.queries: list[str] = []
        outer = self

        class Handler(BaseHTTPRequestHandler):
            def log_message(self, *args: object) -> None:
                pass

            def do_GET(self) -> None:  # noqa: N802 - the stdlib's name
                parts = urlsplit(self.path)
                qs = parse_qs(parts.query)
                if parts.path != "/search" or qs.get("format") != ["json"]:
                    self.send_error(404)
                    return
                q = qs.get("q", [""])[0]
                outer.queries.append(q)
                results = [{"title": f"{q} result {i}", "url": f"https://example.org/{i}",
                            "content": f"About {q}, part {i}."} for i in range(1, 4)]
                body = json.dumps({"query": q, "results": results}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.server.server_address[1]}"

    def start(self) -> SearchServer:
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        self.server.shutdown()
        self.server.server_close()
