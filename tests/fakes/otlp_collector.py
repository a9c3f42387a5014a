"""A fake OpenTelemetry collector on loopback: accepts OTLP/HTTP (protobuf) POST /v1/traces and
keeps the spans it decodes, so tests see exactly what an exporter sent over the wire."""

from __future__ import annotations

import gzip
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

from opentelemetry.proto.collector.trace.v1.trace_service_pb2 import (
    ExportTraceServiceRequest,
    ExportTraceServiceResponse,
)
from opentelemetry.proto.common.v1.common_pb2 import AnyValue

from tests.fakes.loopback import close, serve

KINDS = {0: "unspecified", 1: "internal", 2: "server", 3: "client", 4: "producer",
         5: "consumer"}
STATUSES = {0: "unset", 1: "ok", 2: "error"}


@dataclass
class ReceivedSpan:
    name: str
    trace_id: str
    span_id: str
    parent_id: str
    kind: str
    service: str
    status: str
    attributes: dict[str, Any] = field(default_factory=dict)


def _value(v: AnyValue) -> Any:
    which = v.WhichOneof("value")
    if which == "array_value":
        return [_value(x) for x in v.array_value.values]
    return getattr(v, which) if which else None


class OtlpCollector:
    def __init__(self) -> None:
        self.spans: list[ReceivedSpan] = []
        self.requests = 0
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self._server is not None
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def named(self, name: str) -> list[ReceivedSpan]:
        with self._lock:
            return [s for s in self.spans if s.name == name]

    def wait_for(self, *names: str, timeout: float = 10.0) -> None:
        """Until a span of every name has arrived."""
        deadline = time.monotonic() + timeout
        while not all(self.named(n) for n in names):
            if time.monotonic() > deadline:
                got = sorted({s.name for s in self.spans})
                raise AssertionError(f"spans {names} not all received; got {got}")
            time.sleep(0.05)

    def _receive(self, body: bytes) -> None:
        request = ExportTraceServiceRequest()
        request.ParseFromString(body)
        spans = []
        for resource_spans in request.resource_spans:
            resource = {a.key: _value(a.value) for a in resource_spans.resource.attributes}
            for scope_spans in resource_spans.scope_spans:
                for s in scope_spans.spans:
                    spans.append(ReceivedSpan(
                        name=s.name, trace_id=s.trace_id.hex(), span_id=s.span_id.hex(),
                        parent_id=s.parent_span_id.hex(), kind=KINDS.get(s.kind, str(s.kind)),
                        service=str(resource.get("service.name", "")),
                        status=STATUSES.get(s.status.code, str(s.status.code)),
                        attributes={a.key: _value(a.value) for a in s.attributes}))
        with self._lock:
            self.requests += 1
            self.spans.extend(spans)

    def start(self) -> OtlpCollector:
        fake = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"

            def log_message(self, *_args: Any) -> None:
                pass

            def do_POST(self) -> None:
                body = self.rfile.read(int(self.headers.get("content-length") or 0))
                if self.headers.get("content-encoding") == "gzip":
                    body = gzip.decompress(body)
                if self.path != "/v1/traces":
                    self._reply(404, b"")
                    return
                fake._receive(body)
                self._reply(200, ExportTraceServiceResponse().SerializeToString())

            def _reply(self, status: int, data: bytes) -> None:
                self.send_response(status)
                self.send_header("content-type", "application/x-protobuf")
                self.send_header("content-length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)

        self._server = serve(Handler)
        return self

    def stop(self) -> None:
        close(self._server)
        self._server = None
