"""Helpers for the newsletter tests: a real SMTP server (aiosmtpd) that records what it receives."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import email
import email.policy
import json
import secrets
import uuid
from collections import Counter
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import UTC, datetime
from email.message import EmailMessage
from typing import Any

import pytest
from aiosmtpd.smtp import SMTP, Envelope, Session
from standardwebhooks.webhooks import Webhook

from distretto_dev.testing import DatabaseTarget, free_port, wait_for
from newsletter.config import Settings


@dataclass
class Received:
    rcpt: str
    raw: bytes

    @property
    def message(self) -> EmailMessage:
        return email.message_from_bytes(self.raw, policy=email.policy.default)  # type: ignore[return-value]


@dataclass
class SmtpSink:
    """An aiosmtpd server on a free port that keeps every accepted message.

    ``delay`` slows each transaction down (at RCPT, before anything is accepted); ``hold()``
    parks every new transaction at RCPT until ``release()``; ``refuse`` maps an address to a reply.
    """

    port: int = 0
    delay: float = 0.0
    received: list[Received] = field(default_factory=list)
    refuse: dict[str, str] = field(default_factory=dict)
    parked: int = 0
    hold_after: int | None = None
    """Start holding by itself once this many messages were accepted (no race with the test)."""
    _gate: asyncio.Event | None = None
    _server: Any = None

    async def handle_RCPT(
        self, server: SMTP, session: Session, envelope: Envelope, address: str, rcpt_options: list[str]
    ) -> str:
        if address in self.refuse:
            return self.refuse[address]
        if self.delay:
            await asyncio.sleep(self.delay)
        if self._gate is None and self.hold_after is not None and len(self.received) >= self.hold_after:
            self.hold()
        if self._gate is not None:
            self.parked += 1
            try:
                await self._gate.wait()
            finally:
                self.parked -= 1
        envelope.rcpt_tos.append(address)
        return "250 2.1.5 OK"

    async def handle_DATA(self, server: SMTP, session: Session, envelope: Envelope) -> str:
        raw = envelope.original_content or b""
        for rcpt in envelope.rcpt_tos:
            self.received.append(Received(rcpt=rcpt, raw=raw))
        return "250 2.0.0 Ok: queued"

    def hold(self) -> None:
        self._gate = asyncio.Event()

    def release(self) -> None:
        self.hold_after = None
        if self._gate is not None:
            self._gate.set()
        self._gate = None

    def count_by_rcpt(self) -> Counter[str]:
        return Counter(r.rcpt for r in self.received)

    def to(self, address: str) -> list[Received]:
        return [r for r in self.received if r.rcpt == address]

    async def start(self) -> SmtpSink:
        self.port = self.port or free_port()
        loop = asyncio.get_running_loop()
        self._server = await loop.create_server(
            lambda: SMTP(self, hostname="sink.test", decode_data=False), "127.0.0.1", self.port
        )
        return self

    async def stop(self) -> None:
        self.release()
        if self._server is not None:
            self._server.close()
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._server.wait_closed(), 2)


@pytest.fixture
async def sink() -> AsyncIterator[SmtpSink]:
    s = await SmtpSink().start()
    yield s
    await s.stop()


def make_settings(database: DatabaseTarget, kafka_bootstrap: str, sink: SmtpSink, **kw: Any) -> Settings:
    values: dict[str, Any] = dict(
        database_url=database.url,
        database_schema=database.schema,
        kafka_bootstrap_servers=kafka_bootstrap,
        smtp_servers=f"127.0.0.1:{sink.port}",
        smtp_connections_per_server=2,
        link_base_url="http://service",
        delivery_poll_interval=0.05,
        scheduler_interval=0.2,
        relay_poll_interval=0.2,
        secret_key=LINK_SECRET,
        bounce_webhook_secret=WEBHOOK_SECRET,
        log_json=False,
        log_level="WARNING",
    )
    values.update(kw)
    return Settings(**values)


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
