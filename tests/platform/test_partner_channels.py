"""A partner created through the gateway receives a member's joining on the SSE stream, as a
signed webhook and on its Kafka topic, with the same id, nothing personal in it (real membership,
partners and gateway processes, each connecting to the SASL broker as its own least-rights Kafka
user; a receiver verifying with the ``standardwebhooks`` library; kcat with the partner's SCRAM
credentials)."""

from __future__ import annotations

import asyncio
import contextlib
import json
import sys
import time
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import httpx
import pytest
import uvicorn
from standardwebhooks.webhooks import Webhook

from distretto_dev.testing import ServiceProcess, free_port, kcat, start_processes, stop_processes, wait_for
from distretto_shared.kafka_security import KafkaCredentials

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "deploy"))
import kafka_access

ADMIN = {"email": "admin@partners.example", "password": "partners-admin-password"}
JOINED = "distretto.public.organisation.joined.v1"


class Receiver:
    """A webhook receiver on a real socket: verifies, records (arrival time, id, body)."""

    def __init__(self) -> None:
        self.secret = ""
        self.received: list[tuple[float, str, dict[str, Any]]] = []
        self.unverified = 0

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            return
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        headers = {k.decode(): v.decode() for k, v in scope["headers"]}
        try:
            Webhook(self.secret).verify(body, headers)
            self.received.append((time.monotonic(), headers["webhook-id"], json.loads(body)))
            status = 204
        except Exception:
            self.unverified += 1
            status = 401
        await send({"type": "http.response.start", "status": status, "headers": []})
        await send({"type": "http.response.body", "body": b""})


@pytest.fixture(scope="module")
async def platform(
    kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory
) -> AsyncIterator[tuple[str, str, str]]:
    root: Path = tmp_path_factory.mktemp("partners")
    prefix = f"pt{uuid.uuid4().hex[:8]}."
    common = {
        "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "DISTRETTO_TOPIC_PREFIX": prefix,
        "DISTRETTO_DATA_DIR": str(root / "data"),
    }
    # Each process connects as its own Kafka user with the rights derived from its spec, as in `make up`.
    names = ("membership", "partners", "gateway")
    passwords = {name: f"pw-{uuid.uuid4().hex}" for name in names}
    # the ACLs name this run's physical topics: derived with its prefix
    await asyncio.to_thread(kafka_access.provision, kafka_bootstrap, passwords, KafkaCredentials.from_env(), common, 1)
    own = {name: {**common, **kafka_access.service_env(name, passwords[name])} for name in names}
    membership = ServiceProcess("membership", env=own["membership"], log_path=root / "membership.log")
    partners = ServiceProcess(
        "partners",
        env={
            **own["partners"],
            # the test's receiver is on loopback, over plain http
            "PARTNERS_WEBHOOK_REQUIRE_HTTPS": "false",
            "PARTNERS_WEBHOOK_ALLOW_PRIVATE_ADDRESSES": "true",
            "PARTNERS_STREAM_POLL_SECONDS": "0.5",
        },
        log_path=root / "partners.log",
    )
    gateway = ServiceProcess(
        "gateway",
        env={
            **own["gateway"],
            "GATEWAY_ADMIN_EMAIL": ADMIN["email"],
            "GATEWAY_ADMIN_PASSWORD": ADMIN["password"],
            "GATEWAY_MEMBERSHIP_URL": f"http://127.0.0.1:{membership.port}",
            "GATEWAY_PARTNERS_URL": f"http://127.0.0.1:{partners.port}",
        },
        log_path=root / "gateway.log",
    )
    try:
        await start_processes([membership, partners, gateway], timeout=90)
        yield gateway.url, kafka_bootstrap, prefix
    finally:
        stop_processes([gateway, partners, membership])


async def test_the_same_joining_arrives_on_the_stream_as_a_webhook_and_on_kafka_with_one_id(
    platform: tuple[str, str, str],
) -> None:
    platform, bootstrap, prefix = platform  # type: ignore[assignment]
    receiver = Receiver()
    port = free_port()
    server = uvicorn.Server(uvicorn.Config(receiver, host="127.0.0.1", port=port, log_level="warning", lifespan="off"))
    serving = asyncio.create_task(server.serve())
    stream_events: list[tuple[float, dict[str, Any]]] = []
    connected = asyncio.Event()
    tag = uuid.uuid4().hex[:8]
    planted = {
        "email": f"pia.planted.{tag}@example.org",
        "last_name": f"Plantedrossi{tag}",
        "phone": "+39 0577 555 1234",
    }

    async def follow(url: str, key: str) -> None:
        async with (
            httpx.AsyncClient(base_url=url, timeout=httpx.Timeout(10, read=60)) as client,
            client.stream("GET", "/api/partners/stream", headers={"X-API-Key": key}) as response,
        ):
            assert response.status_code == 200, await response.aread()
            async for line in response.aiter_lines():
                connected.set()
                if line.startswith("data:"):
                    stream_events.append((time.monotonic(), json.loads(line.removeprefix("data:").strip())))

    try:
        async with httpx.AsyncClient(base_url=platform, timeout=30) as gw:
            token = (await gw.post("/auth/token", json=ADMIN)).json()["access_token"]
            admin = {"Authorization": f"Bearer {token}"}
            key = await gw.post(
                "/auth/api-keys",
                headers=admin,
                json={
                    "name": "Agenzia",
                    "role": "partner",
                    "scopes": ["GET /api/partners/stream"],
                    "expires_in_days": 30,
                },
            )
            assert key.status_code == 201, key.text
            partner = await gw.post(
                "/api/partners/partners",
                headers=admin,
                json={"name": "Agenzia", "event_types": [JOINED], "api_key_id": key.json()["id"], "kafka": True},
            )
            assert partner.status_code == 201, partner.text
            kafka = partner.json()["kafka"]
            assert kafka["topics"] == [f"{prefix}public.organisation.v1"]
            endpoint = await gw.post(
                f"/api/partners/partners/{partner.json()['id']}/webhooks",
                headers=admin,
                json={"url": f"http://127.0.0.1:{port}/hook"},
            )
            assert endpoint.status_code == 201, endpoint.text
            receiver.secret = endpoint.json()["secret"]
            # The partner's key reaches the stream only; the administration stays the admin's.
            as_partner = {"X-API-Key": key.json()["key"]}
            assert (await gw.get("/api/partners/partners", headers=as_partner)).status_code == 403
            assert (await gw.get("/api/partners/stream")).status_code == 401

            follower = asyncio.create_task(follow(platform, key.json()["key"]))
            await asyncio.wait_for(connected.wait(), 30)

            org = await gw.post(
                "/api/membership/organisations",
                headers=admin,
                json={"name": f"Partnerbio {tag} S.r.l.", "kind": "company", "sectors": ["biotech"], "province": "SI"},
            )
            assert org.status_code == 201, org.text
            contact = await gw.post(
                f"/api/membership/organisations/{org.json()['id']}/contacts",
                headers=admin,
                json={"first_name": "Pia", "consent_newsletter": True, **planted},
            )
            assert contact.status_code == 201, contact.text
            approved = await gw.post(
                f"/api/membership/organisations/{org.json()['id']}/approve", headers=admin, json={}
            )
            assert approved.status_code == 200, approved.text
            joined_at = time.monotonic()

            async def both() -> bool:
                return bool(stream_events) and bool(receiver.received)

            await wait_for(both, timeout=60, what="the joining on the stream and as a webhook")
            follower.cancel()
            with contextlib.suppress(BaseException):
                await follower
    finally:
        server.should_exit = True
        await serving

    (sse_at, event), (hook_at, hook_id, body) = stream_events[0], receiver.received[0]
    assert event["type"] == body["type"] == JOINED
    assert event["id"] == hook_id == body["id"]  # one id on both channels
    assert event["data"] == body["data"] and event["data"]["name"] == f"Partnerbio {tag} S.r.l."
    text = json.dumps(event) + json.dumps(body)
    for value in planted.values():
        assert value not in text
    assert receiver.unverified == 0

    # Kafka, direct: the partner's SCRAM user reads the same event (ce_id header) from its public topic,
    # and is refused the internal topic that carries the contact.
    topic = kafka["topics"][0]
    read = await asyncio.to_thread(
        kcat,
        bootstrap,
        kafka["username"],
        kafka["password"],
        "-C",
        "-t",
        topic,
        "-o",
        "beginning",
        "-e",
        "-f",
        "%h %s\n",
    )
    assert read.returncode == 0, read.stderr
    assert f"ce_id={event['id']}" in read.stdout and f"Partnerbio {tag} S.r.l." in read.stdout
    for value in planted.values():
        assert value not in read.stdout
    internal = await asyncio.to_thread(
        kcat, bootstrap, kafka["username"], kafka["password"], "-C", "-t", f"{prefix}membership.contact.v2", "-e"
    )
    assert internal.returncode != 0 and "authoriz" in internal.stderr.lower(), internal.stderr
    # Reported, not asserted (the machine is shared): how long after the approval each arrived.
    print(f"\nSSE after {sse_at - joined_at:.3f}s, webhook after {hook_at - joined_at:.3f}s")
