"""Helpers for the newsletter tests: settings, signed bounce reports, lists, subscribers, templates, campaigns."""

from __future__ import annotations

import base64
import json
import secrets
import uuid
from datetime import UTC, datetime
from typing import Any

import pytest
from standardwebhooks.webhooks import Webhook

from distretto_dev.smtp_sink import SmtpSink
from distretto_dev.testing import DatabaseTarget, settings_for, wait_for
from newsletter.config import Settings


@pytest.fixture
def sink(smtp_sink: SmtpSink) -> SmtpSink:
    """The suite's SMTP server (the plugin's ``smtp_sink``)."""
    return smtp_sink


def make_settings(database: DatabaseTarget, kafka_bootstrap: str, sink: SmtpSink, **kw: Any) -> Settings:
    values: dict[str, Any] = dict(
        smtp_servers=f"127.0.0.1:{sink.port}",
        smtp_connections_per_server=2,
        link_base_url="http://service",
        delivery_poll_interval=0.05,
        scheduler_interval=0.2,
        secret_key=LINK_SECRET,
        bounce_webhook_secret=WEBHOOK_SECRET,
    )
    return settings_for(Settings, database, kafka_bootstrap, **{**values, **kw})


LINK_SECRET = secrets.token_urlsafe(32)
"""The link-signing key of this test session (random: a weak one would stop the service)."""
WEBHOOK_SECRET = "whsec_" + base64.b64encode(b"newsletter-tests-webhook-secret!").decode()


def signed_headers(
    body: bytes, *, secret: str = WEBHOOK_SECRET, msg_id: str | None = None, at: datetime | None = None
) -> dict[str, str]:
    """Standard Webhooks headers for ``body``, as a mail provider sends them."""
    msg_id = msg_id or f"msg_{uuid.uuid4().hex}"
    at = at or datetime.now(UTC)
    return {
        "content-type": "application/json",
        "webhook-id": msg_id,
        "webhook-timestamp": str(int(at.timestamp())),
        "webhook-signature": Webhook(secret).sign(msg_id, at, body),
    }


async def post_bounce(client: Any, report: dict[str, Any], **kw: Any) -> Any:
    """POST a signed bounce report."""
    body = json.dumps(report).encode()
    return await client.post("/bounces", content=body, headers=signed_headers(body, **kw))


async def wait_until(predicate: Any, timeout: float = 30.0, what: str = "") -> Any:
    """``wait_for`` with this suite's short poll (the timeout is a hang guard, stretched by patience)."""
    return await wait_for(predicate, timeout=timeout, interval=0.05, what=what)


async def setup_list(client: Any, slug: str, visibility: str = "public") -> dict[str, Any]:
    r = await client.post("/lists", json={"slug": slug, "name": slug.title(), "visibility": visibility})
    assert r.status_code == 201, r.text
    return r.json()  # type: ignore[no-any-return]


async def add_subscriber(client: Any, email_addr: str, lists: list[str], **kw: Any) -> dict[str, Any]:
    body = {"email": email_addr, "lists": lists, "preconfirmed": True, "consent_source": "test-import", **kw}
    r = await client.post("/subscribers", json=body)
    assert r.status_code == 201, r.text
    return r.json()  # type: ignore[no-any-return]


TEMPLATE = {
    "name": "basic",
    "subject": "News for {{ subscriber.name }}",
    "body_html": "<p>Dear {{ subscriber.name }},</p><p>{{ campaign.data.get('text', 'news') }}</p>",
    "body_text": "Dear {{ subscriber.name }},\n\n{{ campaign.data.get('text', 'news') }}\n",
}


async def setup_template(client: Any, **kw: Any) -> dict[str, Any]:
    r = await client.post("/templates", json={**TEMPLATE, **kw})
    assert r.status_code == 201, r.text
    return r.json()  # type: ignore[no-any-return]


async def campaign_status(client: Any, campaign_id: str) -> dict[str, Any]:
    r = await client.get(f"/campaigns/{campaign_id}")
    assert r.status_code == 200, r.text
    return r.json()  # type: ignore[no-any-return]


async def wait_finished(client: Any, campaign_id: str, timeout: float = 60.0) -> dict[str, Any]:
    async def done() -> Any:
        c = await campaign_status(client, campaign_id)
        return c if c["status"] == "finished" else None

    return await wait_until(done, timeout, what=f"campaign {campaign_id} finished")  # type: ignore[no-any-return]
