"""OpenTelemetry spans across HTTP and Kafka: request → outbox → relay → consumer → handler.

The W3C ``traceparent`` already travels: an incoming request's header, then the outbox row's
CloudEvents headers, then the consumer's :class:`EventMeta`. With tracing on, each hop opens a
span whose parent is what arrived, and what it emits carries the new span's ``traceparent``:

- HTTP (``RequestContextMiddleware``): a SERVER span ``METHOD /route/template``;
- outbox relay: a PRODUCER span ``publish <topic>`` per published row;
- consumer: a CONSUMER span ``handle <event type>`` around the handler (events the handler
  writes to its own outbox carry this span's ``traceparent``).

Tracing is on only when an OTLP endpoint is configured (``OTEL_EXPORTER_OTLP_ENDPOINT`` or
``OTEL_EXPORTER_OTLP_TRACES_ENDPOINT``, the OpenTelemetry convention): spans are batched and
exported over OTLP/HTTP, the service's name as ``service.name``. Otherwise every helper here is
a no-op costing one attribute check — no span objects, no context work.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from typing import Any

from opentelemetry import trace
from opentelemetry.trace import Span, SpanKind
from opentelemetry.trace.propagation.tracecontext import TraceContextTextMapPropagator

_propagator = TraceContextTextMapPropagator()


class _State:
    enabled = False
    tracer: Any = None


state = _State()


def configure(service: str) -> bool:
    """Export spans over OTLP when an endpoint is configured (once per process); returns whether tracing is on."""
    if state.enabled:
        return True
    endpoint = os.environ.get("OTEL_EXPORTER_OTLP_TRACES_ENDPOINT") or os.environ.get("OTEL_EXPORTER_OTLP_ENDPOINT")
    if not endpoint:
        return False
    from opentelemetry.exporter.otlp.proto.http.trace_exporter import OTLPSpanExporter
    from opentelemetry.sdk.resources import Resource
    from opentelemetry.sdk.trace import TracerProvider
    from opentelemetry.sdk.trace.export import BatchSpanProcessor

    provider = TracerProvider(resource=Resource.create({"service.name": os.environ.get("OTEL_SERVICE_NAME", service)}))
    provider.add_span_processor(BatchSpanProcessor(OTLPSpanExporter()))  # reads the OTEL_EXPORTER_OTLP_* variables
    trace.set_tracer_provider(provider)
    enable(provider)
    return True


def enable(provider: Any) -> None:
    """Trace through ``provider`` (``configure`` does it; tests pass one with an in-memory exporter)."""
    state.tracer = provider.get_tracer("distretto")
    state.enabled = True


def disable() -> None:
    """Stop tracing (tests)."""
    state.enabled = False
    state.tracer = None


def traceparent_of(span: Span) -> str | None:
    """The W3C ``traceparent`` naming ``span`` as the parent."""
    carrier: dict[str, str] = {}
    _propagator.inject(carrier, context=trace.set_span_in_context(span))
    return carrier.get("traceparent")


@contextlib.contextmanager
def span(name: str, kind: SpanKind, parent: str | None, **attributes: Any) -> Iterator[Span | None]:
    """A span whose parent is the ``traceparent`` ``parent`` (a new trace if None); None while tracing is off."""
    if not state.enabled:
        yield None
        return
    context = _propagator.extract({"traceparent": parent}) if parent else None
    attrs = {k: v for k, v in attributes.items() if v is not None}
    with state.tracer.start_as_current_span(name, context=context, kind=kind, attributes=attrs) as current:
        yield current


def record(name: str, kind: SpanKind, parent: str | None, start_ns: int, **attributes: Any) -> None:
    """A span that already happened (from ``start_ns`` to now), e.g. one row of a published batch."""
    if not state.enabled:
        return
    context = _propagator.extract({"traceparent": parent}) if parent else None
    attrs = {k: v for k, v in attributes.items() if v is not None}
    state.tracer.start_span(name, context=context, kind=kind, attributes=attrs, start_time=start_ns).end()


def mark_error(span: Span | None, status: int) -> None:
    """A 5xx answer marks the request's span as failed."""
    if span is not None and status >= 500:
        from opentelemetry.trace import Status, StatusCode

        span.set_status(Status(StatusCode.ERROR, f"HTTP {status}"))


SERVER, PRODUCER, CONSUMER = SpanKind.SERVER, SpanKind.PRODUCER, SpanKind.CONSUMER
