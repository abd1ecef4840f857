"""One trace from the caller through the gateway, the service, its outbox and relay, to the consumer's handler.

The gateway makes its own SERVER span (child of the caller's ``traceparent``) and hands the service
that span as the parent; the service's request span, the relay's PRODUCER span and the consumer's
span follow. Everything runs in this process on real sockets and a real broker, so one in-memory
exporter sees every span.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from opentelemetry.sdk.trace import ReadableSpan, TracerProvider
from opentelemetry.sdk.trace.export import SimpleSpanProcessor
from opentelemetry.sdk.trace.export.in_memory_span_exporter import InMemorySpanExporter
from opentelemetry.trace import SpanKind

from distretto_dev.testing import service_client, wait_for
from distretto_shared import tracing
from distretto_shared.app import create_app
from distretto_shared.identity import Role
from distretto_shared.monitoring import serve_app
from distretto_shared.settings import ServiceSettings
from gateway.app import create_app as create_gateway
from gateway.config import Settings as GatewaySettings
from gateway.domain import POLICY, Policy, _r
from tests.backbone.example import AccountCredited
from tests.backbone.test_app import SPEC

CALLER_TRACE = "0af7651916cd43dd8448eb211c80319c"
CALLER_SPAN = "b7ad6b7169203331"
CALLER = f"00-{CALLER_TRACE}-{CALLER_SPAN}-01"
ADMIN_EMAIL, ADMIN_PASSWORD = "admin@trace.example", "trace-admin-password"


@pytest.fixture
def spans() -> Iterator[InMemorySpanExporter]:
    exporter = InMemorySpanExporter()
    provider = TracerProvider()
    provider.add_span_processor(SimpleSpanProcessor(exporter))
    tracing.enable(provider)
    yield exporter
    tracing.disable()


async def test_one_trace_from_the_gateway_to_the_handler(
    tmp_path: Path, kafka_bootstrap: str, topic_prefix: str, spans: InMemorySpanExporter
) -> None:
    # The backbone's example service stands behind the gateway as "projects" (its audience and group names).
    spec = dataclasses.replace(SPEC, name="projects")
    service = create_app(
        spec,
        ServiceSettings(
            database_url=f"sqlite+aiosqlite:///{tmp_path / 'service.db'}",
            kafka_bootstrap_servers=kafka_bootstrap,
            relay_poll_interval=0.2,
        ),
    )
    handler_span = f"handle {AccountCredited.event_type}"
    async with serve_app(service) as service_url:
        settings = GatewaySettings(
            database_url=f"sqlite+aiosqlite:///{tmp_path / 'gateway.db'}",
            kafka_bootstrap_servers="127.0.0.1:1",
            create_topics=False,
            admin_email=ADMIN_EMAIL,
            admin_password=ADMIN_PASSWORD,
            argon2_time_cost=1,
            argon2_memory_kib=1024,
            argon2_parallelism=1,
            projects_url=service_url,
        )
        gateway = create_gateway(settings)
        gateway.gateway.policy = Policy((_r("POST", "/api/projects/credits", frozenset({Role.ADMIN})), *POLICY))
        async with service_client(gateway, principal=None) as client:
            await wait_for(lambda: _ready(service_url), timeout=60, what="service ready")
            login = await client.post("/auth/token", json={"email": ADMIN_EMAIL, "password": ADMIN_PASSWORD})
            token = login.json()["access_token"]
            r = await client.post(
                "/api/projects/credits",
                json={"account_id": "t", "amount": 1, "seq": 1},
                headers={"Authorization": f"Bearer {token}", "traceparent": CALLER},
            )
            assert r.status_code == 201, r.text
            await wait_for(lambda: _named(spans, handler_span), timeout=30, what="handler span")

    trace_id = int(CALLER_TRACE, 16)
    by_name: dict[str, ReadableSpan] = {}
    for s in spans.get_finished_spans():
        if s.context is not None and s.context.trace_id == trace_id:
            by_name[s.name] = s
    at_gateway = by_name["POST /api/projects/credits"]
    request = by_name["POST /credits"]
    publish = by_name[f"publish {topic_prefix}example.account.v1"]
    handle = by_name[handler_span]

    def parent(span: ReadableSpan) -> int | None:
        return span.parent.span_id if span.parent is not None else None

    def span_id(span: ReadableSpan) -> int:
        assert span.context is not None
        return span.context.span_id

    assert at_gateway.kind == SpanKind.SERVER
    assert parent(at_gateway) == int(CALLER_SPAN, 16)  # continues the caller's trace
    assert at_gateway.attributes is not None
    assert at_gateway.attributes["distretto.upstream"] == "projects"
    assert at_gateway.attributes["http.response.status_code"] == 201
    assert request.kind == SpanKind.SERVER and parent(request) == span_id(at_gateway)  # the upstream call's parent
    assert publish.kind == SpanKind.PRODUCER and parent(publish) == span_id(request)
    assert handle.kind == SpanKind.CONSUMER and parent(handle) == span_id(request)
    assert handle.attributes is not None
    assert handle.attributes["messaging.consumer.group.name"] == "projects.example-projection"


async def test_tracing_off_the_caller_traceparent_goes_on_unchanged(
    tmp_path: Path, spans: InMemorySpanExporter
) -> None:
    tracing.disable()
    seen: list[str | None] = []

    async def upstream(scope, receive, send):  # type: ignore[no-untyped-def]
        if scope["type"] != "http":
            return
        seen.append(dict(scope["headers"]).get(b"traceparent", b"").decode() or None)
        await send({"type": "http.response.start", "status": 200, "headers": [(b"content-length", b"2")]})
        await send({"type": "http.response.body", "body": b"{}"})

    async with serve_app(upstream) as url:
        settings = GatewaySettings(
            database_url=f"sqlite+aiosqlite:///{tmp_path / 'gateway.db'}",
            kafka_bootstrap_servers="127.0.0.1:1",
            create_topics=False,
            admin_email=ADMIN_EMAIL,
            admin_password=ADMIN_PASSWORD,
            argon2_time_cost=1,
            argon2_memory_kib=1024,
            argon2_parallelism=1,
            projects_url=url,
        )
        gateway = create_gateway(settings)
        gateway.gateway.policy = Policy((_r("GET", "/api/projects/anything", None), *POLICY))
        async with service_client(gateway, principal=None) as client:
            r = await client.get("/api/projects/anything", headers={"traceparent": CALLER})
            assert r.status_code == 200
    assert seen == [CALLER]
    assert spans.get_finished_spans() == ()


async def _ready(url: str) -> bool:
    async with httpx.AsyncClient() as client:
        try:
            return (await client.get(url + "/readyz")).status_code == 200
        except httpx.HTTPError:
            return False


async def _named(exporter: InMemorySpanExporter, name: str) -> bool:
    return any(s.name == name for s in exporter.get_finished_spans())
