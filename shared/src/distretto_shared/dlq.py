"""Dead letters: list them and replay them (``distretto-dlq``).

A dead letter is the original record, unchanged, plus ``dlq_*`` headers naming
the error, the attempts and the origin (topic, partition, offset, consumer
group). Replaying publishes the original record back to its origin topic with
its original CloudEvents headers: consumers that already handled it skip it
through their inbox, the one that failed handles it now.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import sys
from dataclasses import asdict, dataclass
from typing import Any

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, TopicPartition

from distretto_shared.consumer import DLQ_HEADERS, DLQ_TOPIC

REPLAY_GROUP = "distretto.dlq-replay"


@dataclass
class DeadLetter:
    """One record of a dead-letter topic."""

    dlq_topic: str
    offset: int
    key: str | None
    headers: dict[str, str]
    value: bytes | None

    @property
    def origin_topic(self) -> str:
        """The topic the record was first published to."""
        return self.headers.get(DLQ_TOPIC) or self.dlq_topic.removesuffix(".dlq")

    def summary(self) -> dict[str, Any]:
        """A JSON-friendly view for the CLI."""
        body: Any
        try:
            body = json.loads(self.value or b"")
        except (ValueError, UnicodeDecodeError):
            body = (self.value or b"")[:200].decode(errors="replace")
        d = asdict(self)
        d["value"] = body
        return d


def _dlq_name(topic: str) -> str:
    return topic if topic.endswith(".dlq") else f"{topic}.dlq"


async def list_dead_letters(bootstrap: str, topic: str, *, from_committed: bool = False) -> list[DeadLetter]:
    """Every dead letter of ``topic`` (origin or ``.dlq`` name); only unreplayed ones with ``from_committed``."""
    name = _dlq_name(topic)
    consumer = AIOKafkaConsumer(
        bootstrap_servers=bootstrap,
        group_id=REPLAY_GROUP if from_committed else None,
        enable_auto_commit=False,
        auto_offset_reset="earliest",
    )
    await consumer.start()
    out: list[DeadLetter] = []
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
        for tp in tps:
            committed = await consumer.committed(tp) if from_committed else None
            if committed is None:
                await consumer.seek_to_beginning(tp)
            else:
                consumer.seek(tp, committed)
        while any([await consumer.position(tp) < end[tp] for tp in tps]):
            batch = await consumer.getmany(timeout_ms=1000)
            for recs in batch.values():
                for r in recs:
                    if r.offset >= end[TopicPartition(r.topic, r.partition)]:
                        continue
                    out.append(
                        DeadLetter(
                            dlq_topic=name,
                            offset=r.offset,
                            key=r.key.decode(errors="replace") if r.key else None,
                            headers={k: v.decode(errors="replace") for k, v in r.headers or ()},
                            value=r.value,
                        )
                    )
    finally:
        await consumer.stop()
    return out


async def replay(bootstrap: str, topic: str, *, offsets: list[int] | None = None) -> list[DeadLetter]:
    """Publish dead letters back to their origin topic.

    With ``offsets``, exactly those; otherwise every dead letter not replayed
    before (progress is kept as the ``distretto.dlq-replay`` group's offset).
    """
    name = _dlq_name(topic)
    letters = await list_dead_letters(bootstrap, name, from_committed=offsets is None)
    if offsets is not None:
        wanted = set(offsets)
        letters = [d for d in letters if d.offset in wanted]
        missing = wanted - {d.offset for d in letters}
        if missing:
            raise LookupError(f"no dead letter at offset(s) {sorted(missing)} of {name}")
    if not letters:
        return []
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True)
    await producer.start()
    try:
        for d in letters:
            headers = [(k, v.encode()) for k, v in d.headers.items() if k not in DLQ_HEADERS]
            headers.append(("dlq_replayed_from", f"{name}@{d.offset}".encode()))
            await producer.send_and_wait(
                d.origin_topic, value=d.value, key=d.key.encode() if d.key else None, headers=headers
            )
    finally:
        await producer.stop()
    if offsets is None:
        consumer = AIOKafkaConsumer(bootstrap_servers=bootstrap, group_id=REPLAY_GROUP, enable_auto_commit=False)
        await consumer.start()
        try:
            tp = TopicPartition(name, 0)
            consumer.assign([tp])
            await consumer.commit({tp: max(d.offset for d in letters) + 1})
        finally:
            await consumer.stop()
    return letters


def main(argv: list[str] | None = None) -> int:
    """``distretto-dlq list TOPIC`` / ``distretto-dlq replay TOPIC [--offset N ...]``."""
    parser = argparse.ArgumentParser(prog="distretto-dlq", description="List and replay dead letters.")
    parser.add_argument(
        "--bootstrap", default=os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "127.0.0.1:9092"), help="Kafka bootstrap"
    )
    sub = parser.add_subparsers(dest="command", required=True)
    ls = sub.add_parser("list", help="print the dead letters of a topic as JSON lines")
    ls.add_argument("topic", help="origin topic or its .dlq")
    rp = sub.add_parser("replay", help="publish dead letters back to their origin topic")
    rp.add_argument("topic", help="origin topic or its .dlq")
    rp.add_argument("--offset", type=int, action="append", help="replay only this DLQ offset (repeatable)")
    args = parser.parse_args(argv)
    try:
        if args.command == "list":
            for d in asyncio.run(list_dead_letters(args.bootstrap, args.topic)):
                print(json.dumps(d.summary(), default=str))
            return 0
        done = asyncio.run(replay(args.bootstrap, args.topic, offsets=args.offset))
        print(f"replayed {len(done)} dead letter(s) from {_dlq_name(args.topic)}")
        return 0
    except LookupError as exc:
        print(f"distretto-dlq: {exc}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    raise SystemExit(main())
