"""One trace from the producing request to the consuming handler (OpenTelemetry, in-memory exporter)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from opentelemetry.sdk.trace import TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from distretto_dev.testing import DatabaseTarget, service_client, wait_for
from distretto_shared import tracing
from distretto_shared.app import create_app

from .example import AccountCredited, effect_rows
from .test_app import SPEC, settings_for

CALLER_TRACE = "4bf92f3577b34da6a3ce929d0e0e4736"
CALLER = f"00-{CALLER_TRACE}-00f067aa0ba902b7-01"


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing.enable(provider)
    yield exporter
    tracing.disable()


async def test_one_trace_spans_the_request_the_relay_and_the_handler(
    database: DatabaseTarget, kafka_bootstrap: str, topic_prefix: str, spans: InMemorySpanExporter
) -> None:
    app = create_app(SPEC, settings_for(database, kafka_bootstrap))
    async with service_client(app) as client:
        await wait_for(lambda: _ready(client), timeout=60, what="ready")
        r = await client.post(
            "/credits", json={"account_id": "t", "amount": 1, "seq": 1}, headers={"traceparent": CALLER}
        )
        assert r.status_code == 201
        await wait_for(lambda: effect_rows(app.state.ctx.db), timeout=30, what="handled")
        handler_span = f"handle {AccountCredited.event_type}"
        await wait_for(lambda: _named(spans, handler_span), what="handler span")

    by_name = {s.name: s for s in spans.get_finished_spans() if s.context.trace_id == int(CALLER_TRACE, 16)}
    request = by_name["POST /credits"]
    publish = by_name[f"publish {topic_prefix}example.account.v1"]
    handle = by_name[handler_span]
    assert request.kind == SpanKind.SERVER and request.parent is not None
    assert request.parent.span_id == int("00f067aa0ba902b7", 16)  # continues the caller's trace
    assert request.attributes is not None and request.attributes["http.response.status_code"] == 201
    assert publish.kind == SpanKind.PRODUCER and publish.parent is not None
    assert handle.kind == SpanKind.CONSUMER and handle.parent is not None
    # The outbox row carried the request span's traceparent to the relay and to the consumer.
    assert publish.parent.span_id == request.context.span_id
    assert handle.parent.span_id == request.context.span_id
    assert handle.attributes is not None and handle.attributes["messaging.consumer.group.name"] == (
        "example.example-projection"
    )


async def _ready(client: object) -> bool:
    return (await client.get("/readyz")).status_code == 200  # type: ignore[attr-defined]


async def _named(exporter: InMemorySpanExporter, name: str) -> bool:
    return any(s.name == name for s in exporter.get_finished_spans())


def test_tracing_off_costs_nothing_but_a_check() -> None:
    assert tracing.state.enabled is False
    with tracing.span("x", tracing.SERVER, CALLER) as span:
        assert span is None
    tracing.record("x", tracing.PRODUCER, CALLER, 0)  # nothing to record, nothing raised
    assert tracing.configure("example") is False  # no OTLP endpoint configured
