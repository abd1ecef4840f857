"""Fixtures of the partners tests: settings, a partner principal, and a real webhook receiver."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator
from dataclasses import dataclass, field
from datetime import date
from pathlib import Path
from typing import Any

import pytest
import uvicorn
from standardwebhooks.webhooks import Webhook, WebhookVerificationError

from distretto_dev.testing import DatabaseTarget, free_port, settings_for, wait_for
from distretto_shared.contracts import membership as ms
from distretto_shared.identity import Principal, Role
from partners.config import Settings

PARTNER_KEY = "key-agency"
PARTNER = Principal(id=f"apikey:{PARTNER_KEY}", role=Role.PARTNER)
ORG_TYPES = ["distretto.public.organisation.joined.v1", "distretto.public.organisation.left.v1"]


@pytest.fixture(autouse=True)
def _local_state(data_dir: Path) -> Path:
    """Relay lock files of the test apps go to the test's folder."""
    return data_dir


def make_settings(database: DatabaseTarget, kafka_bootstrap: str, **overrides: Any) -> Settings:
    """Settings for a test service: local receivers allowed, short retries and heartbeats."""
    values: dict[str, Any] = {
        "webhook_require_https": False,
        "webhook_allow_private_addresses": True,  # the receivers run on loopback
        "webhook_retry_schedule": [0.2, 0.4],
        "webhook_poll_seconds": 0.1,
        "stream_heartbeat_seconds": 1.0,
        "stream_poll_seconds": 0.2,
    }
    return settings_for(Settings, database, kafka_bootstrap, **{**values, **overrides})


def env_of(database: DatabaseTarget, kafka_bootstrap: str, **extra: str) -> dict[str, str]:
    """Environment of a partners process on the test database and broker."""
    env = {
        "PARTNERS_DATABASE_URL": database.url,
        "KAFKA_BOOTSTRAP_SERVERS": kafka_bootstrap,
        "PARTNERS_RELAY_POLL_INTERVAL": "0.2",
        "PARTNERS_WEBHOOK_REQUIRE_HTTPS": "false",
        "PARTNERS_WEBHOOK_ALLOW_PRIVATE_ADDRESSES": "true",
        "PARTNERS_STREAM_HEARTBEAT_SECONDS": "1",
        "PARTNERS_STREAM_POLL_SECONDS": "0.2",
        "PARTNERS_LOG_LEVEL": "WARNING",
        **extra,
    }
    if database.schema:
        env["PARTNERS_DATABASE_SCHEMA"] = database.schema
    return env


def joined(n: int, **profile: Any) -> ms.OrganisationJoined:
    """An OrganisationJoined for organisation ``org-<n>``."""
    values: dict[str, Any] = {
        "organisation_id": f"org-{n}",
        "name": f"Biotech {n} S.r.l.",
        "kind": "company",
        "sectors": ["biotech"],
        "province": "SI",
        "size_class": "small",
        "status": "active",
    }
    values.update(profile)
    return ms.OrganisationJoined(
        organisation_id=f"org-{n}", profile=ms.OrganisationProfile(**values), joined_on=date(2026, 3, 1)
    )


@dataclass
class Delivery:
    """One verified request the receiver accepted or refused."""

    webhook_id: str
    body: dict[str, Any]
    status: int
    endpoint: str


@dataclass
class Receiver:
    """A real HTTP server that verifies every request with the ``standardwebhooks`` library.

    ``secrets[path]`` is the endpoint's secret; ``fail[path]`` how many more requests of that
    path answer 503; ``refuse_all`` paths always answer 500. Unverifiable requests are counted
    in ``unverified`` and answered 401.
    """

    port: int = 0
    secrets: dict[str, list[str]] = field(default_factory=dict)
    fail: dict[str, int] = field(default_factory=dict)
    refuse_all: set[str] = field(default_factory=set)
    deliveries: list[Delivery] = field(default_factory=list)
    unverified: list[str] = field(default_factory=list)
    in_flight: dict[str, int] = field(default_factory=dict)
    max_in_flight: int = 0
    delay: float = 0.0

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.port}{path}"

    def accepted(self, path: str) -> list[Delivery]:
        return [d for d in self.deliveries if d.endpoint == path and d.status == 200]

    async def __call__(self, scope: dict[str, Any], receive: Any, send: Any) -> None:
        if scope["type"] != "http":
            if scope["type"] == "lifespan":
                while (await receive())["type"] != "lifespan.shutdown":
                    pass
                await send({"type": "lifespan.shutdown.complete"})
            return
        path = scope["path"]
        body = b""
        while True:
            message = await receive()
            body += message.get("body", b"")
            if not message.get("more_body"):
                break
        headers = {k.decode(): v.decode() for k, v in scope["headers"]}
        self.in_flight[path] = self.in_flight.get(path, 0) + 1
        self.max_in_flight = max(self.max_in_flight, self.in_flight[path])
        try:
            if self.delay:
                await asyncio.sleep(self.delay)
            status = 401
            for secret in self.secrets.get(path, []):
                try:
                    Webhook(secret).verify(body, headers)
                    status = 200
                    break
                except WebhookVerificationError:
                    continue
            if status == 401:
                self.unverified.append(headers.get("webhook-id", ""))
            else:
                if path in self.refuse_all:
                    status = 500
                elif self.fail.get(path, 0) > 0:
                    self.fail[path] -= 1
                    status = 503
                self.deliveries.append(Delivery(headers["webhook-id"], json.loads(body), status, path))
        finally:
            self.in_flight[path] -= 1
        await send({"type": "http.response.start", "status": status, "headers": [(b"content-length", b"0")]})
        await send({"type": "http.response.body", "body": b""})


@contextlib.asynccontextmanager
async def serving(receiver: Receiver) -> AsyncIterator[None]:
    """The receiver listening on its port until the block ends (then the port refuses connections)."""
    server = uvicorn.Server(
        uvicorn.Config(receiver, host="127.0.0.1", port=receiver.port, log_level="warning", lifespan="off")
    )
    task = asyncio.create_task(server.serve())

    async def started() -> bool:
        if task.done():
            task.result()  # it could not start: its error, now
        return bool(server.started)

    await wait_for(started, what="the receiver listening")
    try:
        yield
    finally:
        server.should_exit = True
        await task


@contextlib.asynccontextmanager
async def running_receiver() -> AsyncIterator[Receiver]:
    """A receiver on a real socket."""
    receiver = Receiver(port=free_port())
    async with serving(receiver):
        yield receiver
