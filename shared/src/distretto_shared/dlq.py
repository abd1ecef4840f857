"""Dead letters: list, show, replay and discard them (``distretto dlq …``, ``distretto-dlq``).

A dead letter is the original record, unchanged, plus ``dlq_*`` headers naming the error,
the attempts, the origin (topic, partition, offset) and the consumer group that failed
(``dlq_consumer``). Each consumer group dead-letters a record on its own: one record that
three groups cannot handle is three entries, one per group.

**Replay goes to the one group that failed.** The record is published back to its origin
topic with its original CloudEvents headers plus ``dlq_replay_for: <group>``; every other
group skips it (``distretto_replays_skipped_total``) before decoding it, so a group that had
handled the record never sees it again, and a record that fails again is one new entry for
that group — never one per group.

**Every entry has a state, kept in the dead-letter topic itself.** Replaying or discarding an
entry appends a small resolution record (headers ``dlq_resolution`` and ``dlq_resolves``, a
JSON body with the action, the reason and the time) to the same ``.dlq`` topic. An entry
without a resolution is *pending*; ``replay`` takes only pending entries, so running it twice
replays nothing twice. The resolution is written after the replayed record is acknowledged:
a crash in between leaves the entry pending, and the next replay is absorbed by the group's
inbox.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient

from distretto_shared.consumer import (
    DLQ_CONSUMER,
    DLQ_ERROR,
    DLQ_ERROR_KIND,
    DLQ_HEADERS,
    DLQ_TIME,
    DLQ_TOPIC,
    REPLAY_FOR,
    REPLAYED_FROM,
)
from distretto_shared.kafka_security import KafkaCredentials, default_credentials
from distretto_shared.topics import topic_name

RESOLUTION = "dlq_resolution"
RESOLVES = "dlq_resolves"
PENDING, REPLAYED, DISCARDED = "pending", "replayed", "discarded"


@dataclass
class DeadLetter:
    """One entry of a dead-letter topic, with its state."""

    dlq_topic: str
    offset: int
    key: str | None
    headers: dict[str, str]
    value: bytes | None
    status: str = PENDING
    resolution: dict[str, Any] = field(default_factory=dict)

    @property
    def origin_topic(self) -> str:
        """The topic the record was first published to."""
        return self.headers.get(DLQ_TOPIC) or self.dlq_topic.removesuffix(".dlq")

    @property
    def consumer(self) -> str:
        """The consumer group that could not handle it (``<service>.<consumers>``)."""
        return self.headers.get(DLQ_CONSUMER, "")

    @property
    def reason(self) -> str:
        """Why it was dead-lettered."""
        return self.headers.get(DLQ_ERROR, "")

    @property
    def kind(self) -> str:
        """``invalid`` (undecodable), ``rejected`` (refused by the handler) or ``failed`` (retries exhausted)."""
        return self.headers.get(DLQ_ERROR_KIND, "")

    @property
    def time(self) -> str:
        """When it was dead-lettered (ISO 8601)."""
        return self.headers.get(DLQ_TIME, "")

    def body(self) -> Any:
        """The record's body: parsed JSON, or its first 2,000 characters as text."""
        try:
            return json.loads(self.value or b"")
        except (ValueError, UnicodeDecodeError):
            return (self.value or b"")[:2000].decode(errors="replace")

    def summary(self) -> dict[str, Any]:
        """A JSON-friendly view for the command lines."""
        return {
            "dlq_topic": self.dlq_topic,
            "offset": self.offset,
            "status": self.status,
            "consumer": self.consumer,
            "origin_topic": self.origin_topic,
            "kind": self.kind,
            "reason": self.reason,
            "time": self.time,
            "key": self.key,
            "headers": self.headers,
            "value": self.body(),
            "resolution": self.resolution,
        }


def dlq_name(topic: str) -> str:
    """The dead-letter topic of ``topic`` (an origin or ``.dlq`` name, prefix applied if missing)."""
    name = topic if topic.endswith(".dlq") else f"{topic}.dlq"
    prefix = os.environ.get("DISTRETTO_TOPIC_PREFIX", "")
    return name if not prefix or name.startswith(prefix) else topic_name(name)


async def dead_letter_topics(bootstrap: str, credentials: KafkaCredentials | None = None) -> list[str]:
    """Every ``.dlq`` topic of the cluster (with this environment's prefix)."""
    admin = AIOKafkaAdminClient(
        bootstrap_servers=bootstrap, request_timeout_ms=10000, **(credentials or default_credentials()).aiokafka()
    )
    await admin.start()
    try:
        names = await admin.list_topics()
    finally:
        await admin.close()
    prefix = os.environ.get("DISTRETTO_TOPIC_PREFIX", "")
    return sorted(n for n in names if n.endswith(".dlq") and n.startswith(prefix))


async def _read(bootstrap: str, name: str, credentials: KafkaCredentials | None = None) -> list[Any]:
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=None,
        enable_auto_commit=False,
        **(credentials or default_credentials()).aiokafka(),
    )
    await consumer.start()
    out: list[Any] = []
    try:
        partitions = consumer.partitions_for_topic(name)
        if not partitions:
            await consumer._client.force_metadata_update()
            partitions = consumer.partitions_for_topic(name) or set()
        tps = [TopicPartition(name, p) for p in sorted(partitions)]
        if not tps:
            return []
        consumer.assign(tps)
        end = await consumer.end_offsets(tps)
        await consumer.seek_to_beginning(*tps)
        while any([await consumer.position(tp) < end[tp] for tp in tps]):
            batch = await consumer.getmany(timeout_ms=1000)
            for recs in batch.values():
                out += [r for r in recs if r.offset < end[TopicPartition(r.topic, r.partition)]]
    finally:
        await consumer.stop()
    return sorted(out, key=lambda r: (r.partition, r.offset))


async def list_dead_letters(
    bootstrap: str,
    topic: str,
    *,
    consumer: str | None = None,
    status: str | None = None,
    credentials: KafkaCredentials | None = None,
) -> list[DeadLetter]:
    """The entries of ``topic``'s dead-letter topic with their state, oldest first.

    ``consumer`` keeps one group's entries; ``status`` (``pending``, ``replayed``,
    ``discarded``) one state's.
    """
    name = dlq_name(topic)
    entries: dict[int, DeadLetter] = {}
    resolutions: dict[int, dict[str, Any]] = {}
    for r in await _read(bootstrap, name, credentials):
        headers = {k: v.decode(errors="replace") for k, v in r.headers or ()}
        if RESOLUTION in headers:
            try:
                detail = json.loads(r.value or b"{}")
            except ValueError:
                detail = {}
            detail = {**detail, "action": headers[RESOLUTION], "offset": r.offset}
            resolutions[int(headers.get(RESOLVES, "-1"))] = detail
            continue
        key = r.key.decode(errors="replace") if r.key else None
        entries[r.offset] = DeadLetter(dlq_topic=name, offset=r.offset, key=key, headers=headers, value=r.value)
    for offset, detail in resolutions.items():
        if offset in entries:
            entries[offset].status = str(detail["action"])
            entries[offset].resolution = detail
    out = list(entries.values())
    if consumer:
        out = [d for d in out if d.consumer == consumer or d.consumer.endswith(f".{consumer}")]
    if status:
        out = [d for d in out if d.status == status]
    return out


def _select(letters: list[DeadLetter], offsets: list[int] | None, name: str) -> list[DeadLetter]:
    if offsets is None:
        return [d for d in letters if d.status == PENDING]
    by_offset = {d.offset: d for d in letters}
    missing = sorted(set(offsets) - set(by_offset))
    if missing:
        raise LookupError(f"no dead letter at offset(s) {missing} of {name}")
    chosen = [by_offset[o] for o in sorted(set(offsets))]
    done = [d for d in chosen if d.status != PENDING]
    if done:
        raise LookupError(f"already resolved in {name}: " + ", ".join(f"offset {d.offset} ({d.status})" for d in done))
    return chosen


async def _resolve(producer: AIOKafkaProducer, d: DeadLetter, action: str, detail: dict[str, Any]) -> None:
    body = {"action": action, "at": datetime.now(UTC).isoformat(), **detail}
    await producer.send_and_wait(
        d.dlq_topic,
        value=json.dumps(body).encode(),
        key=None,
        headers=[(RESOLUTION, action.encode()), (RESOLVES, str(d.offset).encode())],
    )


async def replay(
    bootstrap: str,
    topic: str,
    *,
    offsets: list[int] | None = None,
    consumer: str | None = None,
    progress: Callable[[DeadLetter], None] | None = None,
) -> list[DeadLetter]:
    """Send pending dead letters back to the one consumer group that failed each; returns them.

    With ``offsets``, exactly those (a resolved one is refused); otherwise every pending
    entry (of ``consumer``'s group, when given).
    """
    name = dlq_name(topic)
    letters = _select(await list_dead_letters(bootstrap, name, consumer=consumer), offsets, name)
    if not letters:
        return []
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", enable_idempotence=True, **default_credentials().aiokafka()
    )
    await producer.start()
    try:
        for d in letters:
            if not d.consumer:
                raise LookupError(f"{name}@{d.offset} names no consumer group (no {DLQ_CONSUMER} header)")
            skip = {*DLQ_HEADERS, REPLAY_FOR, REPLAYED_FROM}
            headers = [(k, v.encode()) for k, v in d.headers.items() if k not in skip]
            headers += [(REPLAY_FOR, d.consumer.encode()), (REPLAYED_FROM, f"{name}@{d.offset}".encode())]
            meta = await producer.send_and_wait(
                d.origin_topic, value=d.value, key=d.key.encode() if d.key else None, headers=headers
            )
            await _resolve(
                producer,
                d,
                REPLAYED,
                {"to": d.consumer, "topic": meta.topic, "partition": meta.partition, "replay_offset": meta.offset},
            )
            d.status = REPLAYED
            if progress:
                progress(d)
    finally:
        await producer.stop()
    return letters


async def discard(
    bootstrap: str,
    topic: str,
    *,
    reason: str,
    offsets: list[int] | None = None,
    consumer: str | None = None,
    progress: Callable[[DeadLetter], None] | None = None,
) -> list[DeadLetter]:
    """Mark pending dead letters as discarded, with ``reason`` recorded; nothing is replayed."""
    reason = reason.strip()
    if not reason:
        raise ValueError("a discard needs a reason")
    name = dlq_name(topic)
    letters = _select(await list_dead_letters(bootstrap, name, consumer=consumer), offsets, name)
    if not letters:
        return []
    producer = AIOKafkaProducer(
        bootstrap_servers=bootstrap, acks="all", enable_idempotence=True, **default_credentials().aiokafka()
    )
    await producer.start()
    try:
        for d in letters:
            await _resolve(producer, d, DISCARDED, {"reason": reason[:2000], "by": os.environ.get("USER", "")})
            d.status = DISCARDED
            if progress:
                progress(d)
    finally:
        await producer.stop()
    return letters


def main(argv: list[str] | None = None) -> int:
    """``distretto-dlq list|show|replay|discard`` (the same as ``distretto dlq``, without colours)."""
    parser = argparse.ArgumentParser(prog="distretto-dlq", description="Dead letters: list, show, replay, discard.")
    parser.add_argument(
        "--bootstrap", default=os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092"), help="Kafka bootstrap"
    )
    sub = parser.add_subparsers(dest="command", required=True)
    ls = sub.add_parser("list", help="print the entries of a dead-letter topic as JSON lines")
    ls.add_argument("topic", help="origin topic or its .dlq")
    ls.add_argument("--consumer", help="only this consumer group's entries")
    ls.add_argument("--status", choices=[PENDING, REPLAYED, DISCARDED], help="only entries in this state")
    sh = sub.add_parser("show", help="print one entry (reason, headers, body)")
    sh.add_argument("topic")
    sh.add_argument("offset", type=int)
    rp = sub.add_parser("replay", help="send pending entries back to the consumer group that failed each")
    rp.add_argument("topic", help="origin topic or its .dlq")
    rp.add_argument("--offset", type=int, action="append", help="replay only this DLQ offset (repeatable)")
    rp.add_argument("--consumer", help="only this consumer group's entries")
    dc = sub.add_parser("discard", help="mark entries as discarded, with a reason")
    dc.add_argument("topic", help="origin topic or its .dlq")
    dc.add_argument("--reason", required=True, help="why (recorded with the entry)")
    dc.add_argument("--offset", type=int, action="append", help="discard only this DLQ offset (repeatable)")
    dc.add_argument("--consumer", help="only this consumer group's entries")
    args = parser.parse_args(argv)
    try:
        if args.command == "list":
            for d in asyncio.run(
                list_dead_letters(args.bootstrap, args.topic, consumer=args.consumer, status=args.status)
            ):
                print(json.dumps(d.summary(), default=str))
            return 0
        if args.command == "show":
            found = [d for d in asyncio.run(list_dead_letters(args.bootstrap, args.topic)) if d.offset == args.offset]
            if not found:
                raise LookupError(f"no dead letter at offset {args.offset} of {dlq_name(args.topic)}")
            print(json.dumps(found[0].summary(), indent=2, default=str))
            return 0
        if args.command == "replay":
            done = asyncio.run(replay(args.bootstrap, args.topic, offsets=args.offset, consumer=args.consumer))
            print(f"replayed {len(done)} dead letter(s) from {dlq_name(args.topic)}")
            return 0
        done = asyncio.run(
            discard(args.bootstrap, args.topic, reason=args.reason, offsets=args.offset, consumer=args.consumer)
        )
        print(f"discarded {len(done)} dead letter(s) of {dlq_name(args.topic)}")
        return 0
    except (LookupError, ValueError) as exc:
        print(f"distretto-dlq: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
