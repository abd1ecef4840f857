"""Each alert rule fires against a real Prometheus, triggered for real, read back from its HTTP API.

The example service of the backbone runs over real HTTP with its consumer on the real broker;
Debian's Prometheus scrapes it every second and evaluates the platform's rules (the production
expressions, with durations and thresholds shrunk: ``monitoring.fast_thresholds``). A port where
nothing listens stands for a stopped service.
"""

from __future__ import annotations

import asyncio
import os
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import pytest

from distretto_dev.testing import ADMIN, free_port, identity_auth, publish_events, wait_for
from distretto_shared import monitoring
from distretto_shared.app import create_app
from distretto_shared.settings import ServiceSettings
from distretto_shared.topics import ensure_topics
from tests.backbone.example import TOPIC, AccountCredited, Faults
from tests.backbone.test_app import SPEC

pytestmark = pytest.mark.skipif(
    not Path(monitoring.PROMETHEUS_BIN).exists(), reason="needs Debian's prometheus (make bootstrap installs it)"
)


@dataclass
class Stack:
    url: str
    app: Any
    topic: str
    prometheus: monitoring.PrometheusServer
    bootstrap: str


@pytest.fixture(scope="module")
async def stack(kafka_bootstrap: str, tmp_path_factory: pytest.TempPathFactory) -> AsyncIterator[Stack]:
    prefix = f"alerts{os.getpid()}."
    old = os.environ.get("DISTRETTO_TOPIC_PREFIX")
    os.environ["DISTRETTO_TOPIC_PREFIX"] = prefix
    try:
        await ensure_topics(kafka_bootstrap, [TOPIC])
        folder = tmp_path_factory.mktemp("alerts")
        settings = ServiceSettings(
            database_url=f"sqlite+aiosqlite:///{folder / 'example.db'}",
            kafka_bootstrap_servers=kafka_bootstrap,
            relay_poll_interval=0.2,
            consumer_max_attempts=1,
        )
        app = create_app(SPEC, settings)
        async with monitoring.serve_app(app) as url, httpx.AsyncClient(base_url=url) as client:
            await wait_for(lambda: _ok(client, "/readyz"), timeout=60, what="example ready")
            addresses = {"example": [url.removeprefix("http://")], "ghost": [f"127.0.0.1:{free_port()}"]}
            thresholds = monitoring.fast_thresholds(service_jobs=("example", "ghost"))
            async with monitoring.prometheus(addresses, thresholds) as prometheus:
                yield Stack(url, app, prefix + TOPIC.name, prometheus, kafka_bootstrap)
    finally:
        Faults.delay = 0.0
        if old is None:
            os.environ.pop("DISTRETTO_TOPIC_PREFIX", None)
        else:
            os.environ["DISTRETTO_TOPIC_PREFIX"] = old


async def _ok(client: httpx.AsyncClient, path: str) -> bool:
    try:
        return (await client.get(path)).status_code == 200
    except httpx.HTTPError:
        return False


async def firing(stack: Stack, name: str, **labels: str) -> list[dict[str, Any]]:
    return [a for a in await stack.prometheus.firing(name) if all(a["labels"].get(k) == v for k, v in labels.items())]


async def test_prometheus_scrapes_the_service_and_sees_the_stopped_one_down(stack: Stack) -> None:
    async def targets() -> dict[str, str]:
        active = (await stack.prometheus.api("targets"))["activeTargets"]
        health = {t["labels"]["job"]: t["health"] for t in active}
        return health if health.get("example") == "up" and health.get("ghost") == "down" else {}

    assert await wait_for(targets, timeout=60, what="targets scraped") == {"example": "up", "ghost": "down"}
    [alert] = await wait_for(lambda: firing(stack, "ServiceNotReady", job="ghost"), timeout=60, what="ServiceNotReady")
    assert alert["labels"]["severity"] == "critical"

    async def example_quiet() -> bool:
        return await firing(stack, "ServiceNotReady", job="example") == []

    # The running service is not reported — or no longer, if a loaded machine slowed one of its
    # readiness checks past its timeout for a scrape: the alert follows the readiness it reads.
    assert await wait_for(example_quiet, timeout=60, what="no ServiceNotReady for the running service")


async def test_the_first_dead_letter_fires(stack: Stack) -> None:
    # The counter is at 0 from the first scrape, so increase() sees the very first dead letter.
    await wait_for(lambda: _scraped(stack, "distretto_dead_letters_total", stack.topic), timeout=30, what="zero")
    assert await firing(stack, "DeadLetters", topic=stack.topic) == []
    from tests.backbone.test_consumer import send_raw

    await send_raw(stack.bootstrap, stack.topic, [(b"k", {"ce_id": "poison"}, b"not json")])
    [alert] = await wait_for(
        lambda: firing(stack, "DeadLetters", topic=stack.topic), timeout=90, what="DeadLetters firing"
    )
    assert alert["labels"]["reason"] == "invalid" and alert["labels"]["consumer"] == "example-projection"


async def _scraped(stack: Stack, metric: str, topic: str) -> bool:
    result = (await stack.prometheus.api("query", query=f'{metric}{{topic="{topic}"}}'))["result"]
    return bool(result)


async def test_an_outbox_backlog_older_than_the_threshold_fires(stack: Stack) -> None:
    relay = stack.app.state.ctx.relay
    bootstrap, relay.bootstrap_servers = relay.bootstrap_servers, "127.0.0.1:1"
    await relay._close_producer()  # the broker is away for the relay: rows wait in the outbox
    try:
        async with httpx.AsyncClient(base_url=stack.url, auth=identity_auth(ADMIN, "example")) as client:
            r = await client.post("/credits", json={"account_id": "a", "amount": 1, "seq": 1})
            assert r.status_code == 201
        [alert] = await wait_for(
            lambda: firing(stack, "OutboxBacklogStale", service="example"), timeout=90, what="OutboxBacklogStale"
        )
        assert float(alert["value"]) > 2
    finally:
        relay.bootstrap_servers = bootstrap
        await relay._close_producer()


async def test_a_lagging_consumer_group_fires(stack: Stack) -> None:
    Faults.delay = 0.5  # the handler slows down; records pile up behind the group's committed offset
    try:
        await publish_events(stack.bootstrap, [AccountCredited(account_id="lag", amount=1, seq=i) for i in range(40)])
        [alert] = await wait_for(
            lambda: firing(stack, "ConsumerLagHigh", consumer="example-projection", topic=stack.topic),
            timeout=90,
            what="ConsumerLagHigh",
        )
        assert float(alert["value"]) > 5
    finally:
        Faults.delay = 0.0
    await asyncio.sleep(0)  # the group catches up on its own; nothing else in this module depends on it
