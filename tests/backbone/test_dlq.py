"""Dead letters with three consumer groups on one topic: a replay reaches only the group that failed.

Against the real broker. Each group's handler writes an effect row tagged with the group's
name, so "handled once per group" is counted in the database, not in memory.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
from collections.abc import AsyncIterator

import sqlalchemy as sa
from faststream.kafka import KafkaBroker
from sqlalchemy.ext.asyncio import AsyncSession

from distretto_dev.testing import wait_for
from distretto_shared import metrics
from distretto_shared.consumer import ConsumerRunner, Consumers
from distretto_shared.db import Database
from distretto_shared.dlq import DISCARDED, PENDING, REPLAYED, discard, list_dead_letters, main, replay
from distretto_shared.events import EventMeta, PermanentEventError
from distretto_shared.kafka_security import default_credentials

from .example import AccountCredited, effects
from .test_consumer import credited, encoded, send_raw

GROUPS = ("group-a", "group-b", "group-c")
FAILING: dict[str, set[int]] = {g: set() for g in GROUPS}
"""seqs each group refuses (a permanent error: dead-lettered at once)."""


def _consumers(name: str) -> Consumers:
    consumers = Consumers(name)

    @consumers.handles(AccountCredited)
    async def on_credited(ctx: object, session: AsyncSession, event: AccountCredited, meta: EventMeta) -> None:
        if event.seq in FAILING[name]:
            raise PermanentEventError(f"{name} refuses seq {event.seq}")
        await session.execute(effects.insert().values(event_id=meta.id, account_id=name, seq=event.seq))

    return consumers


@contextlib.asynccontextmanager
async def three_groups(db: Database, bootstrap: str) -> AsyncIterator[list[ConsumerRunner]]:
    runners = [ConsumerRunner(_consumers(g), db=db, service="example", bootstrap_servers=bootstrap) for g in GROUPS]
    broker = KafkaBroker(bootstrap, logger=None, security=default_credentials().faststream())
    for runner in runners:
        runner.attach(broker)
    await broker.start()
    try:
        yield runners
    finally:
        await broker.stop()
        for runner in runners:
            await runner.close()


async def handled(db: Database) -> dict[str, list[int]]:
    """seqs handled per group, in order (one row per handling)."""
    out: dict[str, list[int]] = {g: [] for g in GROUPS}
    async with db.read() as session:
        for group, seq in await session.execute(sa.select(effects.c.account_id, effects.c.seq).order_by(effects.c.id)):
            out[group].append(seq)
    return out


def skipped(group: str) -> float:
    return metrics.REPLAYS_SKIPPED.labels("example", group)._value.get()


async def test_replay_never_multiplies_dead_letters(db: Database, kafka_bootstrap: str, topics: str) -> None:
    _, headers, _ = encoded(credited("acc-x", 0))
    poison = [(f"p{i}".encode(), {**headers, "ce_id": f"poison-{i}"}, b"{not json") for i in range(4)]
    await send_raw(kafka_bootstrap, topics, [*poison, encoded(credited("acc-x", 1))])
    async with three_groups(db, kafka_bootstrap):
        await wait_for(lambda: _all_handled(db, 1), what="the record after the poison, in every group")
        # The records are spread over partitions: the good one handled says nothing of the others'
        # progress, so the dead letters are awaited (under load they came after it).
        await wait_for(lambda: _count(kafka_bootstrap, topics, 12), what="every poison record dead-lettered")
        letters = await list_dead_letters(kafka_bootstrap, topics)
        # Each group dead-letters each poison record once: 4 × 3.
        assert len(letters) == 12
        assert sorted(d.consumer for d in letters) == sorted(f"example.{g}" for g in GROUPS for _ in range(4))
        assert {d.status for d in letters} == {PENDING}
        assert {d.kind for d in letters} == {"invalid"}

        for round_ in (1, 2):
            before = {g: skipped(g) for g in GROUPS}
            replayed = await replay(kafka_bootstrap, topics)
            assert len(replayed) == 12
            # Every group sees all 12 replays and skips the 8 addressed to the other two.
            for g in GROUPS:
                await wait_for(lambda g=g, n=before[g] + 8: _skipped_at_least(g, n), what=f"{g} saw the replays")
            await wait_for(lambda r=round_: _count(kafka_bootstrap, topics, 12 * (r + 1)), what="re-dead-lettered")
            letters = await list_dead_letters(kafka_bootstrap, topics)
            # Each replayed record failed again in its own group only: 12 new entries, not 36.
            assert len(letters) == 12 * (round_ + 1)
            pending = [d for d in letters if d.status == PENDING]
            assert len(pending) == 12
            assert sum(d.status == REPLAYED for d in letters) == 12 * round_
            for d in pending:
                origin = int(d.headers["dlq_replayed_from"].rsplit("@", 1)[1])
                assert next(e for e in letters if e.offset == origin).consumer == d.consumer
            assert {g: skipped(g) - before[g] for g in GROUPS} == {g: 8 for g in GROUPS}


async def _skipped_at_least(group: str, n: float) -> bool:
    return skipped(group) >= n


async def _count(bootstrap: str, topic: str, n: int) -> bool:
    return len(await list_dead_letters(bootstrap, topic)) >= n


async def _all_handled(db: Database, seq: int) -> bool:
    return all(seq in seqs for seqs in (await handled(db)).values())


async def test_replay_reaches_only_the_group_that_failed(db: Database, kafka_bootstrap: str, topics: str) -> None:
    FAILING["group-b"] = {7, 8}
    await send_raw(kafka_bootstrap, topics, [encoded(credited("acc-y", s)) for s in (6, 7, 8, 9)])
    async with three_groups(db, kafka_bootstrap):
        await wait_for(lambda: _all_handled(db, 9), what="every group past the failures")
        letters = await list_dead_letters(kafka_bootstrap, topics)
        assert [(d.consumer, d.kind) for d in letters] == [("example.group-b", "rejected")] * 2
        assert "group-b refuses seq 7" in letters[0].reason
        assert json.loads(letters[0].value or b"")["seq"] == 7  # the original body, with its headers
        assert letters[0].headers["ce_type"] == AccountCredited.event_type

        # Seq 7 fails again on the first replay: one new entry, for group-b only.
        before = {g: skipped(g) for g in GROUPS}
        assert [d.offset for d in await replay(kafka_bootstrap, topics, offsets=[letters[0].offset])] == [
            letters[0].offset
        ]
        await wait_for(lambda: _count(kafka_bootstrap, topics, 3), what="seq 7 failed again")
        again = (await list_dead_letters(kafka_bootstrap, topics))[-1]
        assert (again.consumer, again.status, again.headers["dlq_replayed_from"].endswith(f"@{letters[0].offset}")) == (
            "example.group-b",
            PENDING,
            True,
        )

        # The fault is fixed: replaying every pending entry of group-b handles 7 there, once.
        FAILING["group-b"] = {8}
        await discard(kafka_bootstrap, topics, offsets=[letters[1].offset], reason="seq 8 was a test record")
        done = await replay(kafka_bootstrap, topics, consumer="group-b")
        assert [d.offset for d in done] == [again.offset]
        await wait_for(lambda: _handled_in(db, "group-b", 7), what="group-b handled seq 7")
        for g in ("group-a", "group-c"):
            await wait_for(lambda g=g: _skipped_at_least(g, before[g] + 2), what=f"{g} skipped both replays")
        seqs = await handled(db)
        assert seqs["group-a"] == seqs["group-c"] == [6, 7, 8, 9]  # never handled twice
        assert sorted(seqs["group-b"]) == [6, 7, 9]
        assert skipped("group-b") == before["group-b"]

        final = await list_dead_letters(kafka_bootstrap, topics)
        assert [d.status for d in final] == [REPLAYED, DISCARDED, REPLAYED]
        assert final[1].resolution["reason"] == "seq 8 was a test record"
        assert final[0].resolution["to"] == "example.group-b"
        assert await list_dead_letters(kafka_bootstrap, topics, status=PENDING) == []
        assert await replay(kafka_bootstrap, topics) == []  # nothing pending: nothing sent


async def _handled_in(db: Database, group: str, seq: int) -> bool:
    return seq in (await handled(db))[group]


async def test_bad_dlq_commands_are_refused_with_a_reason(
    db: Database, kafka_bootstrap: str, topics: str, capsys: object
) -> None:
    FAILING["group-a"] = {1}
    await send_raw(kafka_bootstrap, topics, [encoded(credited("acc-z", 1)), encoded(credited("acc-z", 2))])
    async with three_groups(db, kafka_bootstrap):
        await wait_for(lambda: _all_handled(db, 2), what="handled")
    [entry] = await list_dead_letters(kafka_bootstrap, topics)
    run = asyncio.to_thread
    assert await run(main, ["--bootstrap", kafka_bootstrap, "replay", topics, "--offset", "99"]) == 2
    assert await run(main, ["--bootstrap", kafka_bootstrap, "discard", topics, "--reason", " "]) == 2
    assert await run(main, ["--bootstrap", kafka_bootstrap, "show", topics, str(entry.offset)]) == 0
    out = capsys.readouterr()  # type: ignore[attr-defined]
    assert "no dead letter at offset(s) [99]" in out.err and "needs a reason" in out.err
    shown = json.loads(out.out[out.out.index("{\n") :])  # after any log line of the test process
    assert (shown["consumer"], shown["status"], shown["value"]["seq"]) == ("example.group-a", PENDING, 1)
    argv = ["--bootstrap", kafka_bootstrap, "discard", topics, "--offset", str(entry.offset), "--reason", "obsolete"]
    assert await run(main, argv) == 0
    assert await run(main, argv) == 2  # already discarded: refused, not recorded twice
    assert "already resolved" in capsys.readouterr().err  # type: ignore[attr-defined]
    assert [d.status for d in await list_dead_letters(kafka_bootstrap, topics)] == [DISCARDED]


def teardown_function() -> None:
    for g in GROUPS:
        FAILING[g] = set()
