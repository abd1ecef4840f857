"""Consumer runner against the real broker: inbox, retries, dead letters, replay, restart."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator

import pytest
from aiokafka import AIOKafkaProducer
from faststream.kafka import KafkaBroker

from distretto_dev.testing import read_topic, wait_for
from distretto_shared import metrics
from distretto_shared.consumer import ConsumerRunner
from distretto_shared.db import Database
from distretto_shared.dlq import list_dead_letters, replay
from distretto_shared.events import encode
from distretto_shared.kafka_security import default_credentials

from .example import AccountCredited, Faults, effect_rows, projection


@contextlib.asynccontextmanager
async def running_consumer(db: Database, bootstrap: str, **kw: float) -> AsyncIterator[ConsumerRunner]:
    runner = ConsumerRunner(
        projection,
        db=db,
        service="example",
        bootstrap_servers=bootstrap,
        max_attempts=int(kw.get("max_attempts", 3)),
        batch_size=int(kw.get("batch_size", 500)),
        backoff_initial=0.05,
        backoff_max=0.2,
    )
    broker = KafkaBroker(bootstrap, logger=None, security=default_credentials().faststream())
    runner.attach(broker)
    await broker.start()
    try:
        yield runner
    finally:
        await broker.stop()
        await runner.close()


def credited(account: str, seq: int) -> AccountCredited:
    return AccountCredited(account_id=account, amount=1, seq=seq)


async def send_raw(bootstrap: str, topic: str, items: list[tuple[bytes, dict[str, str], bytes | None]]) -> None:
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", **default_credentials().aiokafka())
    await producer.start()
    try:
        for key, headers, value in items:
            await producer.send_and_wait(
                topic, key=key, value=value, headers=[(k, v.encode()) for k, v in headers.items()]
            )
    finally:
        await producer.stop()


def encoded(event: AccountCredited, **kw: str) -> tuple[bytes, dict[str, str], bytes]:
    key, headers, body = encode(event, source="/tests", **kw)  # type: ignore[arg-type]
    return key.encode(), headers, body


async def seqs_handled(db: Database) -> list[int]:
    return [seq for _, _, seq in await effect_rows(db)]


async def test_duplicate_delivery_has_one_effect(db: Database, kafka_bootstrap: str, topics: str) -> None:
    first = encoded(credited("acc-d", 1))
    again = (first[0], dict(first[1]), first[2])  # same ce_id, delivered twice
    await send_raw(kafka_bootstrap, topics, [first, again, encoded(credited("acc-d", 2))])
    before = metrics.INBOX_DUPLICATES.labels("example", "example-projection")._value.get()
    async with running_consumer(db, kafka_bootstrap):
        await wait_for(lambda: _contains(db, 2), what="sentinel handled")
    assert await seqs_handled(db) == [1, 2]
    assert metrics.INBOX_DUPLICATES.labels("example", "example-projection")._value.get() == before + 1


async def _contains(db: Database, seq: int) -> bool:
    return seq in await seqs_handled(db)


async def test_poison_messages_go_to_dlq_with_reason_and_partition_keeps_flowing(
    db: Database, kafka_bootstrap: str, topics: str
) -> None:
    key = b"acc-p"
    good1 = encoded(credited("acc-p", 1))
    _, h, _ = encoded(credited("acc-p", 99))
    not_json = (key, h, b"{not json")
    _, _h2, _ = encoded(credited("acc-p", 98))
    no_headers = (key, {"content-type": "application/json"}, json.dumps({"account_id": "acc-p"}).encode())
    _, h3, _ = encoded(credited("acc-p", 97))
    invalid = (key, h3, json.dumps({"account_id": "acc-p", "amount": "lots"}).encode())
    _, h4, _ = encoded(credited("acc-p", 96))
    unknown = (key, {**h4, "ce_type": "distretto.nobody.thing.v1"}, b"{}")
    _, _h5, _ = encoded(credited("acc-p", 95))
    Faults.reject_seq = 3
    rejected = encoded(credited("acc-p", 3))
    good2 = encoded(credited("acc-p", 2))
    await send_raw(kafka_bootstrap, topics, [good1, not_json, no_headers, invalid, unknown, rejected, good2])
    async with running_consumer(db, kafka_bootstrap):
        await wait_for(lambda: _contains(db, 2), what="message after the poison handled")
    assert await seqs_handled(db) == [1, 2]

    letters = await list_dead_letters(kafka_bootstrap, topics)
    reasons = [d.headers["dlq_error"] for d in letters]
    assert len(letters) == 5, reasons
    assert "not JSON" in reasons[0]
    assert "missing CloudEvents headers" in reasons[1]
    assert "amount" in reasons[2]  # validation names the bad field
    assert "unknown event type" in reasons[3]
    assert "seq 3 refused" in reasons[4]
    for d in letters:
        assert d.headers["dlq_origin_topic"] == topics
        assert d.headers["dlq_consumer"] == "example.example-projection"
        assert int(d.headers["dlq_origin_offset"]) >= 1
    assert letters[0].value == b"{not json"  # the original body, unchanged


async def test_transient_failure_is_retried_with_backoff_then_handled(
    db: Database, kafka_bootstrap: str, topics: str
) -> None:
    Faults.transient_failures = 2
    before = metrics.CONSUMER_RETRIES.labels("example", topics)._value.get()
    await send_raw(kafka_bootstrap, topics, [encoded(credited("acc-r", 1))])
    async with running_consumer(db, kafka_bootstrap, max_attempts=3):
        await wait_for(lambda: _contains(db, 1), what="handled after retries")
    assert await seqs_handled(db) == [1]
    assert metrics.CONSUMER_RETRIES.labels("example", topics)._value.get() == before + 2
    assert await list_dead_letters(kafka_bootstrap, topics) == []


async def test_exhausted_retries_dead_letter_then_replay_is_handled(
    db: Database, kafka_bootstrap: str, topics: str
) -> None:
    Faults.broken_seq = 1  # an outage that outlasts every attempt
    await send_raw(kafka_bootstrap, topics, [encoded(credited("acc-q", 1)), encoded(credited("acc-q", 2))])
    async with running_consumer(db, kafka_bootstrap, max_attempts=3):
        await wait_for(lambda: _contains(db, 2), what="next message handled")
        assert await seqs_handled(db) == [2]
        letters = await list_dead_letters(kafka_bootstrap, topics)
        assert [d.headers["dlq_attempts"] for d in letters] == ["3"]
        assert "simulated database outage" in letters[0].headers["dlq_error"]

        # The outage is over: replay the dead letter; it is handled once.
        Faults.broken_seq = None
        replayed = await replay(kafka_bootstrap, topics)
        assert len(replayed) == 1
        await wait_for(lambda: _contains(db, 1), what="replayed dead letter handled")
        # A second replay of "everything not yet replayed" finds nothing new.
        assert await replay(kafka_bootstrap, topics) == []
    assert sorted(await seqs_handled(db)) == [1, 2]


async def test_consumer_restarted_mid_stream_loses_nothing_and_doubles_nothing(
    db: Database, kafka_bootstrap: str, topics: str
) -> None:
    total = 300
    await send_raw(kafka_bootstrap, topics, [encoded(credited(f"acc-{i % 7}", i)) for i in range(total)])
    Faults.delay = 0.005  # small batches of slow handlers: the stop lands mid-stream, mid-batch
    async with running_consumer(db, kafka_bootstrap, batch_size=20):
        await wait_for(lambda: _at_least(db, 40), what="some handled")
    handled_first = len(await seqs_handled(db))
    assert handled_first < total, "stopped too late to test a restart"
    Faults.delay = 0.0
    async with running_consumer(db, kafka_bootstrap):
        await wait_for(lambda: _at_least(db, total), timeout=60, what="all handled after restart")
    seqs = await seqs_handled(db)
    assert sorted(seqs) == list(range(total))


async def _at_least(db: Database, n: int) -> bool:
    return len(await seqs_handled(db)) >= n


async def test_dead_letter_topic_is_readable_by_cli(
    db: Database, kafka_bootstrap: str, topics: str, capsys: object
) -> None:
    from distretto_shared.dlq import main

    await send_raw(kafka_bootstrap, topics, [(b"k", {"ce_id": "x"}, b"oops"), encoded(credited("k", 1))])
    async with running_consumer(db, kafka_bootstrap):
        await wait_for(lambda: _contains(db, 1), what="handled")
    assert await asyncio.to_thread(main, ["--bootstrap", kafka_bootstrap, "list", topics]) == 0
    out = [line for line in capsys.readouterr().out.splitlines() if line.startswith("{")]  # type: ignore[attr-defined]
    assert len(out) == 1 and "missing CloudEvents headers" in out[0]
    assert await asyncio.to_thread(main, ["--bootstrap", kafka_bootstrap, "replay", topics, "--offset", "7"]) == 2
    assert (await read_topic(kafka_bootstrap, topics + ".dlq", min_count=1))[0].value == b"oops"


def test_environments_under_different_topic_prefixes_never_share_a_consumer_group(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    # A group's members rebalance together whatever topics each reads: two environments (or two
    # test runs) sharing a cluster must not join each other's groups. The service's ACL covers
    # every group starting with "<service>.".
    from distretto_shared.topics import consumer_group

    monkeypatch.setenv("DISTRETTO_TOPIC_PREFIX", "staging.")
    staging = consumer_group("newsletter", "newsletter-audience")
    monkeypatch.setenv("DISTRETTO_TOPIC_PREFIX", "prod.")
    prod = consumer_group("newsletter", "newsletter-audience")
    monkeypatch.delenv("DISTRETTO_TOPIC_PREFIX")
    plain = consumer_group("newsletter", "newsletter-audience")
    assert (staging, prod, plain) == (
        "newsletter.staging.newsletter-audience",
        "newsletter.prod.newsletter-audience",
        "newsletter.newsletter-audience",
    )
