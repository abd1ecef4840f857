"""Outbox and relay against the real broker, on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections import defaultdict
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from aiokafka.errors import KafkaError
from sqlalchemy import func, select

from distretto_dev.testing import DatabaseTarget, headers_of, read_topic, wait_for
from distretto_shared.db import Database
from distretto_shared.events import EVENT_TYPES, decode
from distretto_shared.outbox import OutboxMessage, OutboxRelay

from .example import SOURCE, AccountCredited, Rollback, credit


def relay_for(db: Database, bootstrap: str, **kw: object) -> OutboxRelay:
    return OutboxRelay(db, service="example", bootstrap_servers=bootstrap, poll_interval=0.2, **kw)  # type: ignore[arg-type]


async def unpublished(db: Database) -> int:
    async with db.read() as s:
        return (
            await s.execute(select(func.count()).select_from(OutboxMessage).where(OutboxMessage.published_at.is_(None)))  # type: ignore[union-attr]
        ).scalar_one()


async def test_committed_change_publishes_exactly_its_events_rolled_back_publishes_nothing(
    db: Database, kafka_bootstrap: str, topics: str
) -> None:
    relay = relay_for(db, kafka_bootstrap, retention=3600)  # published rows kept: counted below
    await relay.start()
    try:
        await credit(db, "acc-1", 10, 1)
        with pytest.raises(Rollback):
            await credit(db, "acc-1", 99, 2, fail=True)
        await credit(db, "acc-2", 20, 3)
        await wait_for(lambda: _zero(unpublished(db)), what="outbox drained")
    finally:
        await relay.stop()

    records = await read_topic(kafka_bootstrap, topics, min_count=2)
    events = [decode(headers_of(r), r.value)[1] for r in records]
    assert sorted((e.account_id, e.seq) for e in events) == [("acc-1", 1), ("acc-2", 3)]  # type: ignore[attr-defined]
    for r in records:
        h = headers_of(r)
        assert h["ce_specversion"] == "1.0"
        assert h["ce_source"] == SOURCE
        assert h["ce_type"] == AccountCredited.event_type
        assert h["ce_subject"] == r.key.decode()
        assert h["content-type"] == "application/json"
        assert h["traceparent"].startswith("00-") and len(h["traceparent"]) == 55
        assert h["correlation_id"] and h["ce_id"] and h["ce_time"]
    # The rolled-back state change left nothing behind either.
    async with db.read() as s:
        assert (await s.execute(select(func.count()).select_from(OutboxMessage))).scalar_one() == 2


async def _zero(coro: object) -> bool:
    return (await coro) == 0  # type: ignore[misc]


async def test_relay_stopped_between_commit_and_publish_catches_up_in_order(
    db: Database, kafka_bootstrap: str, topics: str
) -> None:
    # Commits happen while no relay runs (the relay "crashed" after the commit).
    for seq in range(60):
        await credit(db, f"acc-{seq % 4}", 1, seq)
    assert await read_topic(kafka_bootstrap, topics, timeout=1.5) == []
    assert await unpublished(db) == 60

    relay = relay_for(db, kafka_bootstrap, batch_size=25)  # several batches
    await relay.start()
    try:
        await wait_for(lambda: _zero(unpublished(db)), what="relay caught up")
    finally:
        await relay.stop()
    records = await read_topic(kafka_bootstrap, topics, min_count=60)
    per_key: dict[str, list[int]] = defaultdict(list)
    for r in sorted(records, key=lambda r: (r.partition, r.offset)):
        per_key[r.key.decode()].append(decode(headers_of(r), r.value)[1].seq)  # type: ignore[attr-defined]
    assert sum(len(v) for v in per_key.values()) == 60
    for key, seqs in per_key.items():
        assert seqs == sorted(seqs), f"{key} reordered: {seqs}"
        assert len(set(seqs)) == 15


async def test_relay_retries_while_broker_is_unreachable_and_loses_nothing(db: Database) -> None:
    # A port nothing listens on: the relay must keep the rows and report the error.
    relay = relay_for(db, "127.0.0.1:1")
    await credit(db, "acc-x", 5, 1)
    await relay.start()
    try:
        await wait_for(lambda: _has_error(relay), timeout=30, what="relay reports the broker error")
        assert relay.running
        assert await unpublished(db) == 1
    finally:
        await relay.stop()


async def _has_error(relay: OutboxRelay) -> bool:
    return relay.last_error is not None


async def test_a_relay_waiting_for_its_topics_sends_nothing_before_them_and_all_after(
    db: Database, kafka_bootstrap: str, topics: str
) -> None:
    # A service's relay waits until the service created its topics; stopped before that, it leaves
    # the rows for the next start instead of trying (and waiting) to send them.
    await credit(db, "acc-w", 5, 1)
    relay = relay_for(db, kafka_bootstrap, wait_for_topics=True)
    await relay.start()
    try:
        await wait_for(lambda: _is_active(relay), what="relay took the lead")
    finally:
        await relay.stop()
    assert await unpublished(db) == 1
    assert await read_topic(kafka_bootstrap, topics, timeout=1.5) == []

    relay = relay_for(db, kafka_bootstrap, wait_for_topics=True)
    await relay.start()
    try:
        relay.topics_ready.set()
        relay.notify()
        await wait_for(lambda: _zero(unpublished(db)), what="published once the topics are there")
    finally:
        await relay.stop()
    records = await read_topic(kafka_bootstrap, topics, min_count=1)
    assert [decode(headers_of(r), r.value)[1].account_id for r in records] == ["acc-w"]  # type: ignore[attr-defined]


async def _is_active(relay: OutboxRelay) -> bool:
    return relay.active


async def test_only_one_relay_is_active_per_database(
    database: DatabaseTarget, db: Database, kafka_bootstrap: str, tmp_path: object
) -> None:
    other_db = Database(database.url, schema=database.schema)
    first = relay_for(db, kafka_bootstrap, lock_dir=tmp_path)
    second = relay_for(other_db, kafka_bootstrap, lock_dir=tmp_path)
    await first.start()
    try:
        await wait_for(lambda: _active(first), what="first relay active")
        await second.start()
        await asyncio.sleep(1.0)
        assert first.active and not second.active
        await first.stop()
        # The standby takes over once the lock is free.
        await wait_for(lambda: _active(second), timeout=20, what="second relay takes over")
    finally:
        with contextlib.suppress(Exception):
            await first.stop()
        await second.stop()
        await other_db.dispose()


async def _active(relay: OutboxRelay) -> bool:
    return relay.active


def test_event_contract_is_registered() -> None:
    assert EVENT_TYPES[AccountCredited.event_type] is AccountCredited


async def _rows(db: Database) -> int:
    async with db.read() as s:
        return (await s.execute(select(func.count()).select_from(OutboxMessage))).scalar_one()


async def test_published_rows_are_deleted_once_the_broker_acknowledged_them(
    db: Database, kafka_bootstrap: str, topics: str
) -> None:
    relay = relay_for(db, kafka_bootstrap)
    await relay.start()
    try:
        for seq in range(5):
            await credit(db, "acc-d", 1, seq)
        await wait_for(lambda: _zero(_rows(db)), what="published rows deleted")
    finally:
        await relay.stop()
    records = await read_topic(kafka_bootstrap, topics, min_count=5)
    assert sorted(decode(headers_of(r), r.value)[1].seq for r in records) == list(range(5))  # type: ignore[attr-defined]


async def test_with_a_retention_published_rows_are_kept_then_pruned(
    db: Database, kafka_bootstrap: str, topics: str
) -> None:
    relay = relay_for(db, kafka_bootstrap, retention=3600, prune_interval=0, prune_batch=2)
    await relay.start()
    try:
        for seq in range(5):
            await credit(db, "acc-r", 1, seq)
        await wait_for(lambda: _zero(unpublished(db)), what="outbox published")
        assert await _rows(db) == 5  # kept for the retention
        # Three of them were published two hours ago: past the retention.
        table = OutboxMessage.__table__  # type: ignore[attr-defined]
        async with db.transaction() as s:
            old = (await s.execute(select(table.c.id).order_by(table.c.id).limit(3))).scalars().all()
            await s.execute(
                table.update().where(table.c.id.in_(old)).values(published_at=datetime.now(UTC) - timedelta(hours=2))
            )
        await credit(db, "acc-r", 1, 5)  # a commit wakes the relay, which prunes (two batches of 2)
        await wait_for(lambda: _count_is(_rows(db), 3), what="rows past the retention pruned")
    finally:
        await relay.stop()
    async with db.read() as s:
        kept = [json.loads(p)["seq"] for p in (await s.execute(select(OutboxMessage.payload))).scalars()]  # type: ignore[call-overload]
    assert sorted(kept) == [3, 4, 5]


async def _count_is(coro: object, n: int) -> bool:
    return (await coro) == n  # type: ignore[misc]


async def test_a_batch_the_broker_refused_is_sent_again_before_any_later_batch(
    db: Database, kafka_bootstrap: str, topics: str
) -> None:
    # The relay claims the next batch while the broker acknowledges one; it must send it only once
    # that one was acknowledged whole, or a key's later events would reach the topic first.
    for seq in range(30):
        await credit(db, f"acc-{seq % 3}", 1, seq)
    relay = relay_for(db, kafka_bootstrap, batch_size=10)
    sent: list[list[int]] = []
    real_enqueue = relay._enqueue

    async def refusing_the_second_batch(rows: Any) -> asyncio.Future[Any]:
        sent.append([json.loads(row.payload)["seq"] for row in rows])
        if len(sent) == 2:
            refused: asyncio.Future[Any] = asyncio.get_running_loop().create_future()
            refused.set_exception(KafkaError("refused by the test"))
            return refused
        return await real_enqueue(rows)

    relay._enqueue = refusing_the_second_batch  # type: ignore[method-assign]
    await relay.start()
    try:
        await wait_for(lambda: _zero(_rows(db)), what="outbox published and deleted")
    finally:
        await relay.stop()
    assert sent == [list(range(10)), list(range(10, 20)), list(range(10, 20)), list(range(20, 30))]
    records = await read_topic(kafka_bootstrap, topics, min_count=30)
    per_key: dict[str, list[int]] = defaultdict(list)
    for r in sorted(records, key=lambda r: (r.partition, r.offset)):
        per_key[r.key.decode()].append(decode(headers_of(r), r.value)[1].seq)  # type: ignore[attr-defined]
    for key, seqs in per_key.items():
        assert seqs == sorted(seqs), f"{key} reordered: {seqs}"
    assert sorted(s for seqs in per_key.values() for s in seqs) == list(range(30))


async def test_the_linger_never_holds_a_commit_made_while_idle_and_ends_on_enough_commits_or_stop(
    db: Database, kafka_bootstrap: str, topics: str
) -> None:
    # A linger of an hour: whatever is published below was published without waiting for it.
    relay = relay_for(db, kafka_bootstrap, linger=3600, linger_commits=3)
    await relay.start()
    try:
        await wait_for(lambda: relay.active, what="relay active")
        went_round = relay.last_loop
        await wait_for(lambda: relay.last_loop > went_round, what="relay idle (an empty cycle done)")
        await credit(db, "acc-l", 1, 0)  # the relay is idle: sent at once
        first = await read_topic(kafka_bootstrap, topics, min_count=1)
        assert [decode(headers_of(r), r.value)[1].seq for r in first] == [0]  # type: ignore[attr-defined]
        for seq in (1, 2, 3):  # rows keep coming: the relay lingers, until three commits came
            await credit(db, "acc-l", 1, seq)
        records = await read_topic(kafka_bootstrap, topics, min_count=4)
        assert [decode(headers_of(r), r.value)[1].seq for r in records] == [0, 1, 2, 3]  # type: ignore[attr-defined]
    finally:
        await relay.stop()  # ends the linger: the batch sent last is deleted before the relay stops
    assert await _rows(db) == 0
