"""The mail provider is its own principal: probes of POST /api/newsletter/bounces through the real gateway.

Before: any partner API key could post; a known address got 201 with its subscriber id, an
unknown one 404 (enumeration), and an unsigned report suppressed a person. Now only a report
signed as Standard Webhooks are, with the configured secret, counts; every accepted report gets
the same 202.
"""

from __future__ import annotations

import base64
import json
import uuid
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import httpx
import pytest
from standardwebhooks.webhooks import Webhook

from distretto_dev.testing import ServiceProcess, free_port, start_processes, stop_processes, wait_for

SECRET = "whsec_" + base64.b64encode(uuid.uuid4().bytes + uuid.uuid4().bytes).decode()
ADMIN = {"email": "admin@webhook.example", "password": "webhook-admin-password"}


def signed(
    body: bytes, *, secret: str = SECRET, at: datetime | None = None, msg_id: str | None = None
) -> dict[str, str]:
    at = at or datetime.now(UTC)
    msg_id = msg_id or f"msg_{uuid.uuid4().hex}"
    return {
        "content-type": "application/json",
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(at.timestamp())),
        "webhook-signature": Webhook(secret).sign(msg_id, at, body),
    }


@pytest.fixture(scope="module")
async def gateway(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[str]:
    root: Path = tmp_path_factory.mktemp("webhook")
    common = {
        "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "DISTRETTO_TOPIC_PREFIX": f"wh{uuid.uuid4().hex[:8]}.",
        "DISTRETTO_DATA_DIR": str(root / "data"),
    }
    newsletter = ServiceProcess(
        "newsletter",
        env={
            **common,
            "NEWSLETTER_BOUNCE_WEBHOOK_SECRET": SECRET,
            "NEWSLETTER_SMTP_SERVERS": f"127.0.0.1:{free_port()}",
        },
        log_path=root / "newsletter.log",
    )
    gw = ServiceProcess(
        "gateway",
        env={
            **common,
            "GATEWAY_ADMIN_EMAIL": ADMIN["email"],
            "GATEWAY_ADMIN_PASSWORD": ADMIN["password"],
            "GATEWAY_NEWSLETTER_URL": f"http://127.0.0.1:{newsletter.port}",
        },
        log_path=root / "gateway.log",
    )
    try:
        await start_processes([newsletter, gw], timeout=90)
        yield gw.url
    finally:
        stop_processes([gw, newsletter])


async def test_only_signed_reports_count_and_known_and_unknown_addresses_look_alike(gateway: str) -> None:
    async with httpx.AsyncClient(base_url=gateway, timeout=20) as gw:
        token = (await gw.post("/auth/token", json=ADMIN)).json()["access_token"]
        staff = {"Authorization": f"Bearer {token}"}
        tag = uuid.uuid4().hex[:8]
        assert (
            await gw.post("/api/newsletter/lists", headers=staff, json={"slug": f"l{tag}", "name": "L"})
        ).status_code == 201
        known = f"known.{tag}@webhook.example"
        sub = await gw.post(
            "/api/newsletter/subscribers",
            headers=staff,
            json={"email": known, "lists": [f"l{tag}"], "preconfirmed": True, "consent_source": "test"},
        )
        assert sub.status_code == 201, sub.text
        report = json.dumps({"email": known, "kind": "hard", "reason": "550 unknown user"}).encode()

        async def suppressed() -> bool:
            return bool(
                (await gw.get(f"/api/newsletter/subscribers/{sub.json()['id']}", headers=staff)).json()["suppressed"]
            )

        # Unsigned, wrong secret, stale: refused, the person untouched.
        for headers in (
            {"content-type": "application/json"},
            signed(report, secret="whsec_" + base64.b64encode(b"x" * 32).decode()),
            signed(report, at=datetime.now(UTC) - timedelta(minutes=10)),
        ):
            r = await gw.post("/api/newsletter/bounces", content=report, headers=headers)
            assert r.status_code == 401, r.text
        assert not await suppressed()
        # A staff token without a signature is no better: the signature is the authentication.
        r = await gw.post(
            "/api/newsletter/bounces", content=report, headers={**staff, "content-type": "application/json"}
        )
        assert r.status_code == 401, r.text

        unknown = json.dumps({"email": f"nobody.{tag}@webhook.example", "kind": "hard"}).encode()
        a = await gw.post("/api/newsletter/bounces", content=report, headers=signed(report))
        b = await gw.post("/api/newsletter/bounces", content=unknown, headers=signed(unknown))
        assert (
            (a.status_code, a.json())
            == (b.status_code, b.json())
            == (202, {"status": "accepted", "message": "report received"})
        )
        await wait_for(suppressed, timeout=30, what="the signed hard bounce suppresses the subscriber")
