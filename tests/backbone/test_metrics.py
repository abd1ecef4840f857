"""What /metrics says is true from the first scrape: zeros, the outbox backlog, the lag, readiness."""

from __future__ import annotations

from typing import Any

from prometheus_client.parser import text_string_to_metric_families

from distretto_dev.testing import DatabaseTarget, publish_events, service_client, wait_for
from distretto_shared.app import create_app

from .example import TOPIC, AccountCredited, Faults
from .test_app import SPEC, settings_for


async def scrape(client: Any) -> dict[tuple[str, frozenset[tuple[str, str]]], float]:
    response = await client.get("/metrics")
    assert response.status_code == 200
    return {
        (s.name, frozenset(s.labels.items())): s.value
        for family in text_string_to_metric_families(response.text)
        for s in family.samples
    }


def value(samples: dict[tuple[str, frozenset[tuple[str, str]]], float], name: str, **labels: str) -> float | None:
    return samples.get((name, frozenset(labels.items())))


async def test_labelled_counters_are_zero_before_anything_happens_and_the_backlog_is_read_at_scrape(
    database: DatabaseTarget, topic_prefix: str
) -> None:
    topic = topic_prefix + TOPIC.name
    # Nothing listens on port 1: the broker is "down"; the relay cannot publish.
    async with service_client(create_app(SPEC, settings_for(database, "127.0.0.1:1"))) as client:
        first = await scrape(client)
        for reason in ("invalid", "rejected", "failed"):
            labels = {"service": "example", "consumer": "example-projection", "topic": topic, "reason": reason}
            assert value(first, "distretto_dead_letters_total", **labels) == 0.0
        assert value(first, "distretto_consumer_retries_total", service="example", topic=topic) == 0.0
        # (process-wide: other tests of this process may have counted duplicates already)
        assert (
            value(first, "distretto_inbox_duplicates_total", service="example", consumer="example-projection")
            is not None
        )
        assert value(first, "distretto_outbox_publish_errors_total", service="example") is not None
        assert value(first, "distretto_outbox_backlog", service="example") == 0.0
        assert value(first, "distretto_outbox_oldest_age_seconds", service="example") == 0.0
        assert value(first, "distretto_service_ready", service="example") == 0.0

        for seq in (1, 2, 3):
            assert (await client.post("/credits", json={"account_id": "a", "amount": 1, "seq": seq})).status_code == 201
        # The very next scrape counts them, from the table, though the relay never got to publish.
        after = await scrape(client)
        assert value(after, "distretto_outbox_backlog", service="example") == 3.0
        age = value(after, "distretto_outbox_oldest_age_seconds", service="example")
        assert age is not None and age > 0
        await wait_for(lambda: _older(client, age), what="the oldest row's age grows")


async def _older(client: Any, than: float) -> bool:
    age = value(await scrape(client), "distretto_outbox_oldest_age_seconds", service="example")
    return age is not None and age > than


async def test_consumer_lag_per_group_and_partition_is_read_from_the_broker(
    database: DatabaseTarget, kafka_bootstrap: str, topic_prefix: str
) -> None:
    topic = topic_prefix + TOPIC.name
    async with service_client(create_app(SPEC, settings_for(database, kafka_bootstrap))) as client:
        await wait_for(lambda: _ready(client), timeout=60, what="ready")
        Faults.delay = 0.3  # a slow handler: the group falls behind
        await publish_events(
            kafka_bootstrap, [AccountCredited(account_id="same-key", amount=1, seq=i) for i in range(20)]
        )
        behind = await wait_for(lambda: _lag(client, topic, lambda lag: lag >= 10), what="lag seen")
        assert len(behind) == 1, behind  # one key: one partition lags, the others are at 0
        Faults.delay = 0.0
        await wait_for(lambda: _lag(client, topic, lambda lag: lag == 0, every=True), timeout=60, what="caught up")
        ready = await scrape(client)
        assert value(ready, "distretto_service_ready", service="example") == 1.0


async def _ready(client: Any) -> bool:
    return bool((await client.get("/readyz")).status_code == 200)


async def _lag(client: Any, topic: str, test: Any, every: bool = False) -> dict[str, float] | bool:
    samples = await scrape(client)
    lags = {
        dict(labels)["partition"]: v
        for (name, labels), v in samples.items()
        if name == "distretto_consumer_lag"
        and dict(labels).get("topic") == topic
        and dict(labels).get("consumer") == "example-projection"
    }
    if len(lags) != TOPIC.partitions:
        return False
    if every:
        return all(test(v) for v in lags.values())
    return {p: v for p, v in lags.items() if test(v)} or False
