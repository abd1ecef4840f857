"""Batch handlers: one call and one statement for a fetched batch; a record that fails costs only itself.

Each test runs with the handler on an ORM session and on the Core unit of work (``core=True``)."""

from __future__ import annotations

from collections import Counter

import pytest

from distretto_dev.testing import headers_of, read_topic
from distretto_shared import metrics
from distretto_shared.consumer import DLQ_ERROR_KIND, ConsumerRunner, Consumers, Outcome, Record
from distretto_shared.db import Database
from distretto_shared.events import decode, encode
from distretto_shared.topics import dlq_topic

from .example import AccountCredited, BatchCalls, Faults, batch_projection, core_batch_projection, effect_rows

UNIT = {"session": "AsyncSession", "core": "CoreUnitOfWork"}


@pytest.fixture(params=["session", "core"])
def unit(request: pytest.FixtureRequest) -> str:
    """Which unit of work the batch handler runs in."""
    return str(request.param)


def records(topic: str, seqs: range, *, account: str = "acc-b") -> list[Record]:
    out = []
    for offset, seq in enumerate(seqs):
        key, headers, body = encode(AccountCredited(account_id=account, amount=1, seq=seq), source="/tests")
        out.append(
            Record(
                topic=topic,
                partition=0,
                offset=offset,
                key=key.encode(),
                value=body,
                headers=[(k, v.encode()) for k, v in headers.items()],
            )
        )
    return out


def runner_for(db: Database, bootstrap: str, unit: str) -> ConsumerRunner:
    BatchCalls.sizes = []
    BatchCalls.units = []
    consumers: Consumers = core_batch_projection if unit == "core" else batch_projection
    return ConsumerRunner(
        consumers,
        db=db,
        service="example",
        bootstrap_servers=bootstrap,
        max_attempts=3,
        backoff_initial=0.01,
        backoff_max=0.02,
    )


async def seqs(db: Database) -> list[int]:
    return [seq for _, _, seq in await effect_rows(db)]


async def test_a_batch_is_one_handler_call_and_a_redelivery_has_no_second_effect(
    db: Database, kafka_bootstrap: str, topics: str, unit: str
) -> None:
    runner = runner_for(db, kafka_bootstrap, unit)
    try:
        batch = records(topics, range(20))
        assert await runner.handle_batch(batch) == [Outcome.HANDLED] * 20
        assert BatchCalls.sizes == [20]
        # The same records again, plus two new ones: only the new ones reach the handler.
        again = await runner.handle_batch(batch[:5] + records(topics, range(20, 22)))
        assert again == [Outcome.DUPLICATE] * 5 + [Outcome.HANDLED] * 2
        assert BatchCalls.sizes == [20, 2]
        assert set(BatchCalls.units) == {UNIT[unit]}
    finally:
        await runner.close()
    assert await seqs(db) == list(range(22))


async def test_one_rejected_record_is_dead_lettered_alone_and_the_others_committed_once(
    db: Database, kafka_bootstrap: str, topics: str, unit: str
) -> None:
    Faults.reject_seq = 7
    runner = runner_for(db, kafka_bootstrap, unit)
    try:
        outcomes = await runner.handle_batch(records(topics, range(20)))
    finally:
        await runner.close()
    assert outcomes == [Outcome.HANDLED] * 7 + [Outcome.DEAD_LETTERED] + [Outcome.HANDLED] * 12
    assert sorted(await seqs(db)) == [s for s in range(20) if s != 7]  # each exactly once
    assert BatchCalls.sizes[0] == 20 and BatchCalls.sizes[-1] != 20  # tried whole, then split
    assert 1 in BatchCalls.sizes  # the bad record, alone
    assert set(BatchCalls.units) == {UNIT[unit]}  # the single-record retries too
    dead = await read_topic(kafka_bootstrap, dlq_topic(topics), min_count=1)
    assert [decode(headers_of(r), r.value)[1].seq for r in dead] == [7]  # type: ignore[attr-defined]
    assert headers_of(dead[0])[DLQ_ERROR_KIND] == "rejected"


async def test_a_record_failing_for_a_while_is_retried_alone_then_handled_once(
    db: Database, kafka_bootstrap: str, topics: str, unit: str
) -> None:
    BatchCalls.flaky_seq, BatchCalls.flaky_left = 13, 6
    retries = metrics.CONSUMER_RETRIES.labels("example", topics)
    before = retries._value.get()
    runner = runner_for(db, kafka_bootstrap, unit)
    try:
        outcomes = await runner.handle_batch(records(topics, range(20)))
    finally:
        BatchCalls.flaky_seq = None
        await runner.close()
    assert outcomes == [Outcome.HANDLED] * 20
    assert Counter(await seqs(db)) == Counter(range(20))  # every effect once, none doubled
    assert retries._value.get() > before  # retried on its own, with backoff
    assert BatchCalls.flaky_left == 0
