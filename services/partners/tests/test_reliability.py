"""What partners notice when things go wrong: a receiver down for an hour, the broker restarted
mid-stream, a client that reads slowly, an endpoint disabled after a day of failures (the partner
is told by e-mail through a real SMTP server), and webhook URLs pointing inside the platform."""

from __future__ import annotations

import asyncio
import contextlib
import json
import re
import signal
import socket
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import httpx
import pytest
import sqlalchemy as sa

from distretto_dev.smtp_sink import SmtpSink
from distretto_dev.testing import (
    DatabaseTarget,
    ServiceProcess,
    free_port,
    own_broker,
    patience,
    publish_events,
    service_client,
    wait_for,
)
from partners import domain
from partners.app import create_app
from partners.config import Settings
from partners.models import PublicEventRow

from .conftest import ORG_TYPES, PARTNER, PARTNER_KEY, Receiver, env_of, joined, make_settings, serving

DEFAULT_SCHEDULE = Settings.model_fields["webhook_retry_schedule"].default
HOUR = 3600.0


async def _endpoint(client: Any, receiver: Receiver, path: str, **partner: Any) -> dict[str, Any]:
    body = {"name": "Agenzia regionale", "event_types": ORG_TYPES, **partner}
    created = await client.post("/partners", json=body)
    assert created.status_code == 201, created.text
    made = await client.post(f"/partners/{created.json()['id']}/webhooks", json={"url": receiver.url(path)})
    assert made.status_code == 201, made.text
    receiver.secrets[path] = [made.json()["secret"]]
    return dict(made.json())


async def test_a_receiver_down_for_an_hour_then_back_gets_every_event_in_order(
    database: DatabaseTarget, kafka_bootstrap: str, topic_prefix: str
) -> None:
    # The production schedule and the one-day limit, an hour made a second: the outage below lasts
    # through the first four retries (5 s, 5 min, 30 min, 2 h — over two and a half "hours").
    settings = make_settings(
        database,
        kafka_bootstrap,
        webhook_retry_schedule=[s / HOUR for s in DEFAULT_SCHEDULE],
        webhook_disable_after_seconds=86400 / HOUR,
    )
    app = create_app(settings)
    receiver = Receiver(port=free_port())
    async with service_client(app) as client:
        async with serving(receiver):
            ep = await _endpoint(client, receiver, "/down")
            await publish_events(kafka_bootstrap, [joined(1)])
            await wait_for(lambda: _accepted(receiver, 1), what="the first delivery while the receiver is up")
        # The receiver is down (connections refused); events keep coming.
        await publish_events(kafka_bootstrap, [joined(n) for n in range(2, 12)])

        async def failed_attempts() -> int:
            items = (await client.get(f"/webhooks/{ep['id']}/attempts", params={"limit": 100})).json()["items"]
            return sum(1 for a in items if a["status_code"] is None)

        await wait_for(lambda: _at_least(failed_attempts, 5), timeout=120, what="five refused attempts")
        shown = (await client.get(f"/webhooks/{ep['id']}")).json()
        assert shown["enabled"] is True  # down for hours, not a day: still on
        async with serving(receiver):
            await wait_for(lambda: _accepted(receiver, 11), timeout=120, what="every event after the outage")

            async def all_delivered() -> bool:
                # The receiver has the 11th before the service records its answer: wait for the record.
                items = (await client.get(f"/webhooks/{ep['id']}/messages", params={"limit": 100})).json()["items"]
                return len(items) == 11 and {m["status"] for m in items} == {"delivered"}

            await wait_for(all_delivered, timeout=120, what="every message recorded as delivered")
            messages = (await client.get(f"/webhooks/{ep['id']}/messages", params={"limit": 100})).json()["items"]
    in_log_order = [m["event_id"] for m in sorted(messages, key=lambda m: m["seq"])]
    assert len(in_log_order) == 11 and {m["status"] for m in messages} == {"delivered"}  # none given up
    got = [d.webhook_id for d in receiver.accepted("/down")]
    assert got == in_log_order  # every event, once, in order
    assert receiver.unverified == []


async def test_an_endpoint_disabled_after_a_day_of_failures_tells_the_partner_by_mail(
    database: DatabaseTarget, kafka_bootstrap: str, topic_prefix: str, smtp_sink: SmtpSink
) -> None:
    settings = make_settings(
        database,
        kafka_bootstrap,
        webhook_retry_schedule=[0.05] * 50,
        webhook_disable_after_seconds=0.5,  # "a day"
        notice_smtp_server=f"127.0.0.1:{smtp_sink.port}",
        notice_from="partners@distretto.example",
        notice_retry_seconds=0.2,
    )
    app = create_app(settings)
    receiver = Receiver(port=free_port())
    async with serving(receiver), service_client(app) as client:
        ep = await _endpoint(client, receiver, "/broken", contact_email="integrazioni@agenzia.example")
        mute = await _endpoint(client, receiver, "/mute")  # a partner without a contact address
        receiver.refuse_all.update({"/broken", "/mute"})
        smtp_sink.refuse_all = "451 4.3.0 try again later"  # the relay is not taking mail at first: the notice waits
        await publish_events(kafka_bootstrap, [joined(1)])

        async def shown(endpoint: dict[str, Any]) -> dict[str, Any]:
            return dict((await client.get(f"/webhooks/{endpoint['id']}")).json())

        async def notice_refused() -> bool:
            e = await shown(ep)
            return not e["enabled"] and "451" in (e["notice_error"] or "")

        await wait_for(notice_refused, what="the endpoint disabled, the relay refusing the notice")
        assert smtp_sink.received == []
        smtp_sink.refuse_all = None

        async def notified() -> bool:
            return (await shown(ep))["notified_at"] is not None

        await wait_for(notified, what="the partner told")
        first, *more = smtp_sink.received
        message = first.message
        assert more == [] and first.rcpt == "integrazioni@agenzia.example"  # once, to the partner's address
        assert message["From"] == "partners@distretto.example"
        body = message.get_body(("plain",)).get_content()  # type: ignore[union-attr]
        assert receiver.url("/broken") in body and ep["id"] in body
        assert "disattivato" in body and "disabled" in body and "HTTP 500" in body
        final = await shown(ep)
        assert final["notice_error"] is None and "failing since" in final["disabled_reason"]

        async def mute_disabled() -> bool:
            e = await shown(mute)
            return not e["enabled"] and e["notice_error"] == "the partner has no contact address"

        await wait_for(mute_disabled, what="the partner without an address: disabled, no notice")
        assert len(smtp_sink.received) == 1
        # Enabled by hand and disabled by hand: nobody is mailed about an admin's own action.
        assert (await client.post(f"/webhooks/{ep['id']}/enable")).status_code == 200
        receiver.refuse_all.clear()
        assert (await client.post(f"/webhooks/{ep['id']}/disable")).status_code == 200
        assert (await shown(ep))["enabled"] is False and len(smtp_sink.received) == 1


async def test_webhook_urls_inside_the_platform_are_refused_unless_the_admin_allows_them(
    database: DatabaseTarget, kafka_bootstrap: str, topic_prefix: str
) -> None:
    settings = make_settings(database, kafka_bootstrap, webhook_allow_private_addresses=False)
    app = create_app(settings)
    async with service_client(app) as client:
        pid = (await client.post("/partners", json={"name": "P", "event_types": ORG_TYPES})).json()["id"]
        for url in (
            "http://127.0.0.1:8001/membership/contacts",
            "http://localhost/admin",
            "http://[::1]:8080/",
            "http://169.254.169.254/latest/meta-data/",  # cloud metadata (link-local)
            "http://10.0.0.5/",
            "http://192.168.1.1/",
            "http://172.16.0.1/",
            "http://100.64.0.1/",
            "http://[::ffff:127.0.0.1]/",
            "http://0.0.0.0:8080/",
            "http://[fd00::1]/",
            "http://no-such-host.invalid/hook",
        ):
            refused = await client.post(f"/partners/{pid}/webhooks", json={"url": url})
            assert refused.status_code == 422, (url, refused.text)
            assert "not allowed" in refused.json()["message"], url
        assert (await client.get(f"/partners/{pid}/webhooks")).json() == []  # nothing saved
    # A public address passes the check (no DNS needed for a literal address).
    assert await domain.internal_address_problem("192.0.2.10", 443) is not None  # TEST-NET: reserved
    assert await domain.internal_address_problem("8.8.8.8", 443) is None
    assert await domain.internal_address_problem("2001:4860:4860::8888", 443) is None


async def test_a_name_that_later_points_inside_is_not_called(
    database: DatabaseTarget, kafka_bootstrap: str, topic_prefix: str
) -> None:
    """Checked again at each send: an endpoint saved while allowed, now pointing to loopback, gets
    no request (the attempt is logged as not sent) once internal addresses are refused."""
    settings = make_settings(database, kafka_bootstrap)
    app = create_app(settings)
    receiver = Receiver(port=free_port())
    async with serving(receiver), service_client(app) as client:
        ep = await _endpoint(client, receiver, "/inside")
        app.state.ctx.settings.webhook_allow_private_addresses = False
        await publish_events(kafka_bootstrap, [joined(1)])

        async def blocked() -> list[Any]:
            items = (await client.get(f"/webhooks/{ep['id']}/attempts")).json()["items"]
            return [a for a in items if "not sent" in (a["error"] or "")]

        (attempt, *_) = await wait_for(blocked, what="an attempt refused before any request")
        assert "internal address" in attempt["error"] and receiver.deliveries == []


async def test_a_slow_sse_client_holds_at_most_one_batch_and_then_gets_everything(
    database: DatabaseTarget, kafka_bootstrap: str, topic_prefix: str, tmp_path: Path
) -> None:
    batch = 20
    env = env_of(
        database, kafka_bootstrap, DISTRETTO_DATA_DIR=str(tmp_path / "var"), PARTNERS_STREAM_BATCH_SIZE=str(batch)
    )
    proc = await ServiceProcess("partners", env=env, log_path=tmp_path / "partners.log").start()
    try:
        async with proc.client() as admin:
            made = await admin.post(
                "/partners", json={"name": "Slow", "event_types": ORG_TYPES, "api_key_id": PARTNER_KEY}
            )
            assert made.status_code == 201, made.text
        # 16 MB of events in the log: far more than the kernel's buffers for one connection (4 MB).
        total, pad = 3200, "x" * 5000
        await _fill_log(database, total, pad)

        # A client that sends its request and then reads nothing, with a small receive buffer.
        reader, writer = await _raw_stream(proc)
        async with proc.client() as admin:

            async def progress() -> tuple[float, float]:
                text = (await admin.get("/metrics")).text
                return _metric(text, "distretto_partners_stream_events_sent_total"), _metric(
                    text, "distretto_partners_stream_buffered_events"
                )

            # Wait until the stream makes no more progress (three identical readings in a row): the
            # server is waiting for the client. How long that takes does not matter.
            readings: list[tuple[float, float]] = []

            async def stalled() -> bool:
                readings.append(await progress())
                return len(readings) >= 3 and readings[-1] == readings[-2] == readings[-3] and readings[-1][0] > 0

            await wait_for(stalled, timeout=120, interval=0.5, what="the stream waiting for the slow client")
            sent, buffered = readings[-1]
            assert sent < total / 2, f"{sent} of {total} events left the log for a client that reads nothing"
            assert buffered <= batch, f"{buffered} events held for one stream (batch {batch})"
        # The client catches up: every event, in order, none missing.
        seen = await _read_sse(reader, total)
        writer.close()
        assert seen == list(range(1, total + 1))
    finally:
        proc.kill()


async def test_asked_to_stop_with_a_stream_open_the_service_ends_the_stream_and_stops_by_itself(
    database: DatabaseTarget, kafka_bootstrap: str, topic_prefix: str, tmp_path: Path
) -> None:
    # A partner's stream never ends by itself: a stop (SIGTERM, as from an orchestrator) bounds
    # the wait for it, ends it (the client reconnects with Last-Event-ID) and runs the service's own
    # shutdown, rather than waiting until the process is killed.
    log = tmp_path / "partners.log"
    env = env_of(database, kafka_bootstrap, DISTRETTO_DATA_DIR=str(tmp_path / "var"), PARTNERS_LOG_LEVEL="INFO")
    proc = await ServiceProcess("partners", env=env, log_path=log).start()
    try:
        async with proc.client() as admin:
            made = await admin.post(
                "/partners", json={"name": "Held", "event_types": ORG_TYPES, "api_key_id": PARTNER_KEY}
            )
            assert made.status_code == 201, made.text
        reader, writer = await _raw_stream(proc)
        assert b"retry: 2000" in await asyncio.wait_for(reader.readuntil(b"retry: 2000"), patience(30))
        assert proc.proc is not None
        proc.terminate()
        code = await asyncio.to_thread(proc.proc.wait, patience(60))
        rest = await asyncio.wait_for(reader.read(), patience(30))  # the server closed the stream
        writer.close()
        lines = [json.loads(line) for line in log.read_text().splitlines() if line.startswith("{")]
        # uvicorn exits by the signal it handled (-15) once the service has stopped: not killed.
        assert code in (0, -signal.SIGTERM), log.read_text()
        assert rest.endswith(b"\r\n\r\n") or rest == b"" or rest.endswith(b"\n"), rest[-200:]
        assert any(line["event"] == "service stopped" for line in lines), "the service's shutdown did not run"
        # a stop, not a failure: no request cancelled by the server's grace running out
        assert [line["event"] for line in lines if line.get("logger", "").startswith("uvicorn")] == []
    finally:
        proc.kill()


async def _fill_log(database: DatabaseTarget, total: int, pad: str) -> None:
    from sqlalchemy.ext.asyncio import create_async_engine

    engine = create_async_engine(database.url)
    if database.schema:
        engine = create_async_engine(database.url, connect_args={"server_settings": {"search_path": database.schema}})
    stamp = datetime.now(UTC)
    rows = [
        {
            "event_id": f"00000000-0000-4000-8000-{n:012d}",
            "event_type": ORG_TYPES[0],
            "subject": f"org-{n}",
            "source": "/distretto/partners",
            "time": stamp.isoformat(),
            "payload": json.dumps({"organisation_id": f"org-{n}", "name": f"Org {n}", "pad": pad}),
            "created_at": stamp,
        }
        for n in range(1, total + 1)
    ]
    async with engine.begin() as conn:
        await conn.execute(sa.insert(PublicEventRow.__table__), rows)  # type: ignore[attr-defined]
    await engine.dispose()


async def _raw_stream(proc: ServiceProcess) -> tuple[asyncio.StreamReader, asyncio.StreamWriter]:
    from distretto_dev.testing import identity_headers

    port = int(proc.url.rsplit(":", 1)[1])
    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_RCVBUF, 4096)
    sock.setblocking(False)
    await asyncio.get_running_loop().sock_connect(sock, ("127.0.0.1", port))
    reader, writer = await asyncio.open_connection(sock=sock, limit=2**20)
    headers = identity_headers(PARTNER, "partners")
    request = "GET /stream HTTP/1.1\r\nHost: partners\r\nAccept: text/event-stream\r\n"
    request += "".join(f"{k}: {v}\r\n" for k, v in headers.items()) + "\r\n"
    writer.write(request.encode())
    await writer.drain()
    status = await reader.readline()
    assert b" 200 " in status, status
    return reader, writer


async def _read_sse(reader: asyncio.StreamReader, total: int) -> list[int]:
    ids: list[int] = []
    while len(ids) < total:
        line = await asyncio.wait_for(reader.readline(), 60)
        if not line:
            break
        match = re.match(rb"id: (\d+)", line)
        if match:
            ids.append(int(match.group(1)))
    return ids


def _metric(text: str, name: str) -> float:
    for line in text.splitlines():
        if line.startswith(name + " "):
            return float(line.split()[1])
    raise AssertionError(f"{name} not in /metrics")


async def test_the_broker_restarted_mid_stream_loses_nothing_on_sse_or_webhooks(
    database: DatabaseTarget, topic_prefix: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    broker = own_broker(tmp_path, monkeypatch)
    proc: ServiceProcess | None = None
    receiver = Receiver(port=free_port())
    try:
        bootstrap = broker.bootstrap_servers
        env = env_of(database, bootstrap, DISTRETTO_DATA_DIR=str(tmp_path / "var"))
        proc = await ServiceProcess("partners", env=env, log_path=tmp_path / "partners.log").start()
        async with serving(receiver):
            async with proc.client() as admin:
                made = await admin.post(
                    "/partners", json={"name": "P", "event_types": ORG_TYPES, "api_key_id": PARTNER_KEY}
                )
                assert made.status_code == 201, made.text
                ep = await admin.post(f"/partners/{made.json()['id']}/webhooks", json={"url": receiver.url("/k")})
                receiver.secrets["/k"] = [ep.json()["secret"]]
            stream: list[dict[str, Any]] = []
            sse = asyncio.create_task(_follow(proc, stream))
            await publish_events(bootstrap, [joined(n) for n in range(1, 21)])
            await asyncio.to_thread(broker.stop)  # mid-stream: projector, relay and deliveries under way
            await asyncio.to_thread(broker.start)
            await publish_events(bootstrap, [joined(n) for n in range(21, 31)])
            await wait_for(lambda: _accepted(receiver, 30), timeout=180, what="30 webhooks after the restart")
            await wait_for(lambda: _len_at_least(stream, 30), timeout=60, what="30 events on the stream")
            sse.cancel()
            with contextlib.suppress(BaseException):
                await sse
        subjects = sorted(e["subject"] for e in stream)
        assert subjects == sorted(f"org-{n}" for n in range(1, 31))  # none missed, none repeated
        hooks = [d.webhook_id for d in receiver.accepted("/k")]
        assert len(set(hooks)) == 30 and set(hooks) == {e["id"] for e in stream}  # same ids on both channels
        assert receiver.unverified == []
    finally:
        if proc is not None:
            proc.kill()
        broker.stop()


async def _follow(proc: ServiceProcess, out: list[dict[str, Any]]) -> None:
    async with (
        proc.client(principal=PARTNER, timeout=httpx.Timeout(10, read=None)) as client,
        client.stream("GET", "/stream") as response,
    ):
        assert response.status_code == 200
        async for line in response.aiter_lines():
            if line.startswith("data:"):
                out.append(json.loads(line.removeprefix("data:").strip()))


async def _accepted(receiver: Receiver, n: int) -> bool:
    return len(receiver.accepted(next(iter(receiver.secrets)))) >= n


async def _at_least(fn: Any, n: int) -> bool:
    return bool(await fn() >= n)


async def _len_at_least(items: list[Any], n: int) -> bool:
    return len(items) >= n
