"""OpenTelemetry tracing: OTLP/HTTP export when TASKBENCH_OTEL_ENDPOINT is set, else a no-op.

The SDK and exporter are optional (not in the base dependencies): without them, or without an
endpoint, `span()` costs a context manager and nothing else.
"""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Iterator
from typing import Any

from app.config import get_settings

log = logging.getLogger(__name__)
_tracer: Any = None


def setup(service: str = "taskbench") -> bool:
    """Start exporting spans if configured and installable; True when tracing is on."""
    global _tracer
    endpoint = get_settings().otel_endpoint
    if not endpoint:
        return False
    try:
        from opentelemetry import trace
        from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
        from opentelemetry.sdk.resources import Resource
        from opentelemetry.sdk.trace import TracerProvider
        from opentelemetry.sdk.trace.export import BatchSpanProcessor
    except ImportError:
        log.warning("TASKBENCH_OTEL_ENDPOINT is set but opentelemetry-sdk and "
                    "opentelemetry-exporter-otlp-proto-http are not installed; tracing is off")
        return False
    provider = TracerProvider(resource=Resource.create({"service.name": service}))
    provider.add_span_processor(BatchSpanProcessor(
        OTLPSpanExporter(endpoint=endpoint.rstrip("/") + "/v1/traces")))
    trace.set_tracer_provider(provider)
    _tracer = trace.get_tracer("taskbench")
    return True


@contextlib.contextmanager
def span(name: str, **attributes: Any) -> Iterator[None]:
    """A span around a unit of work (a task run, an LLM call, a tool call)."""
    if _tracer is None:
        yield
        return
    with _tracer.start_as_current_span(name, attributes=attributes):
        yield
