"""OpenTelemetry tracing: OTLP/HTTP export when TASKBENCH_OTEL_ENDPOINT is set, else a no-op.

One trace follows a task across processes::

    POST /api/v1/tasks            server span (app.core.tracing_asgi), in the API process
    └── run_task                  consumer span, in a worker child: the parent arrives as a
        ├── llm.chat  (× steps)   W3C `traceparent` header on the Celery message
        └── tool.<name>

`setup()` runs once per process (the API lifespan; each worker pool child, after the fork, so
the exporter's thread is the child's own). Without an endpoint nothing is imported and `span()`
costs one `if`.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator, Mapping
from typing import Any, Protocol

from app.core.config import get_settings

log = logging.getLogger(__name__)
TRACEPARENT = "traceparent"
_MAX_NAME = 64  # tool names come from the model: keep span names short and few
_tracer: Any = None
_provider: Any = None
_owner: tuple[int, str] = (0, "")  # (pid, endpoint) the provider was made for


class SpanLike(Protocol):
    def set_attribute(self, key: str, value: Any) -> None: ...
    def set_attributes(self, attributes: Mapping[str, Any]) -> None: ...
    def update_name(self, name: str) -> None: ...


class _NoSpan:
    def set_attribute(self, key: str, value: Any) -> None:
        pass

    def set_attributes(self, attributes: Mapping[str, Any]) -> None:
        pass

    def update_name(self, name: str) -> None:
        pass


_NO_SPAN = _NoSpan()


def enabled() -> bool:
    return _tracer is not None


def setup(service: str = "taskbench") -> bool:
    """Start exporting spans if an endpoint is configured; True when tracing is on."""
    global _tracer, _provider, _owner
    endpoint = get_settings().otel_endpoint
    if not endpoint:
        shutdown()
        return False
    if _provider is not None and _owner == (os.getpid(), endpoint):
        return True
    shutdown()
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    # Our own provider, not the global one: that can be set only once per process, and tests
    # and forked children need to replace it.
    _provider = TracerProvider(resource=Resource.create({"service.name": service}))
    _provider.add_span_processor(BatchSpanProcessor(
        OTLPSpanExporter(endpoint=endpoint.rstrip("/") + "/v1/traces")))
    _tracer = _provider.get_tracer("taskbench")
    _owner = (os.getpid(), endpoint)
    log.info("tracing on: exporting spans of %s to %s", service, endpoint)
    return True


def force_flush(timeout_s: float = 10.0) -> bool:
    """Export every finished span now (tests; a worker child before it exits)."""
    return bool(_provider.force_flush(int(timeout_s * 1000))) if _provider is not None else True


def shutdown() -> None:
    """Flush and stop the exporter; `span()` is a no-op again."""
    global _tracer, _provider
    provider, _tracer, _provider = _provider, None, None
    if provider is not None and _owner[0] == os.getpid():
        provider.shutdown()


@contextlib.contextmanager
def span(
    name: str,
    attributes: Mapping[str, Any] | None = None,
    *,
    kind: str = "internal",
    parent: Mapping[str, str] | None = None,
    expected: tuple[type[BaseException], ...] = (),
) -> Iterator[SpanLike]:
    """A span around a unit of work; current for its duration, so nested spans are children.

    `kind` is an OpenTelemetry SpanKind name (server, client, consumer…); `parent` a carrier of
    W3C trace headers (a Celery message's) to continue, instead of the current span;
    `expected` exceptions steer control flow (`finish`) and end the span without an error."""
    if _tracer is None:
        yield _NO_SPAN
        return
    from opentelemetry.trace import SpanKind

    context = extract(parent) if parent is not None else None
    clean = {k: v for k, v in (attributes or {}).items() if v is not None}
    with _tracer.start_as_current_span(name[:_MAX_NAME], context=context,
                                       kind=SpanKind[kind.upper()], attributes=clean,
                                       record_exception=False,
                                       set_status_on_exception=False) as current:
        try:
            yield current
        except expected as exc:
            current.set_attribute("taskbench.outcome", type(exc).__name__)
            raise
        except BaseException as exc:
            _record_error(current, exc)
            raise


def _record_error(current: Any, exc: BaseException) -> None:
    from opentelemetry.trace import Status, StatusCode

    current.record_exception(exc)
    current.set_status(Status(StatusCode.ERROR, f"{type(exc).__name__}: {exc}"[:200]))


def extract(carrier: Mapping[str, str]) -> Any:
    """The OpenTelemetry context a carrier of W3C trace headers names (empty if none)."""
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    return TraceContextTextMapPropagator().extract(dict(carrier))


def inject() -> dict[str, str]:
    """W3C trace headers naming the current span, for a message to carry; {} when off."""
    if _tracer is None:
        return {}
    from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

    carrier: dict[str, str] = {}
    TraceContextTextMapPropagator().inject(carrier)
    return carrier


def consumer_span(name: str, headers: Mapping[str, Any] | None,
                  attributes: Mapping[str, Any] | None = None
                  ) -> contextlib.AbstractContextManager[SpanLike]:
    """The span of a queued job, child of the span that enqueued it (from its headers)."""
    value = (headers or {}).get(TRACEPARENT)
    carrier = {TRACEPARENT: value} if isinstance(value, str) else {}
    return span(name, attributes, kind="consumer", parent=carrier)


def completion_attributes(completion: Any) -> dict[str, Any]:
    """GenAI semantic-convention attributes of one model call (an `llm.Completion`)."""
    return {
        "gen_ai.response.model": completion.model,
        "gen_ai.usage.input_tokens": completion.prompt_tokens,
        "gen_ai.usage.output_tokens": completion.completion_tokens,
        "taskbench.cost_usd": float(completion.cost_usd),
    }
