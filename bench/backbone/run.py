"""Backbone benchmark: outbox → Kafka → consumer → inbox, beside raw aiokafka on the same broker.

Prints, for raw aiokafka and for the Distretto pipeline on SQLite and PostgreSQL:
- throughput: N events written, published, consumed and handled (events/s), and the ratio to raw;
- latency at a fixed rate (default 500 events/s): p50 / p99 from the moment the event is
  written (raw: handed to the producer) to the moment its handler runs (raw: consumer receives it).

Usage: uv run python bench/backbone/run.py [--events 20000] [--rate 500] [--seconds 10]
Kafka: KAFKA_BOOTSTRAP_SERVERS if set, else a throwaway broker. PostgreSQL:
DISTRETTO_TEST_POSTGRES_URL if set, else deploy/postgres/ensure-postgres.sh.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import os
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from pathlib import Path

import sqlalchemy as sa
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from faststream.kafka import KafkaBroker

ROOT = Path(__file__).resolve().parents[2]
sys.path.insert(0, str(ROOT))

from distretto_shared.consumer import ConsumerRunner, Consumers
from distretto_shared.db import Database
from distretto_shared.events import Event, EventMeta
from distretto_shared.kafka_runner import session_broker
from distretto_shared.migrations import upgrade_async
from distretto_shared.outbox import OutboxRelay, add_event
from distretto_shared.testing import drop_schema
from distretto_shared.topics import TopicSpec, ensure_topics
from tests.backbone.example import MIGRATIONS, effects

TOPIC = TopicSpec("bench.events.v1", partitions=3)
KEYS = 16


class BenchEvent(Event):
    event_type = "distretto.bench.event.v1"
    topic = TOPIC.name
    subject_field = "key"

    key: str
    seq: int
    sent_at: float


class Probe:
    latencies: list[float] = []
    handled = 0


consumers = Consumers("bench-projection")


@consumers.handles(BenchEvent)
async def on_event(session: sa.ext.asyncio.AsyncSession, event: BenchEvent, meta: EventMeta) -> None:
    await session.execute(effects.insert().values(event_id=meta.id, account_id=event.key, seq=event.seq))
    Probe.latencies.append(time.time() - event.sent_at)
    Probe.handled += 1


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))] * 1000


# -- raw aiokafka -------------------------------------------------------------------------


async def raw_throughput(bootstrap: str, n: int) -> float:
    topic = f"bench.raw.{uuid.uuid4().hex[:8]}"
    await ensure_topics(bootstrap, [TopicSpec(topic, partitions=3)])
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True, linger_ms=2)
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=f"raw-{topic}",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await producer.start()
    await consumer.start()
    await asyncio.sleep(1.0)
    payload = b'{"key": "k", "seq": 0, "sent_at": 0}'
    t0 = time.perf_counter()

    async def produce() -> None:
        futs = [await producer.send(topic, payload, key=f"k{i % KEYS}".encode()) for i in range(n)]
        await asyncio.gather(*futs)

    async def consume() -> None:
        got = 0
        while got < n:
            batch = await consumer.getmany(timeout_ms=500)
            for recs in batch.values():
                got += len(recs)
            if batch:
                await consumer.commit()

    await asyncio.gather(produce(), consume())
    elapsed = time.perf_counter() - t0
    await producer.stop()
    await consumer.stop()
    return n / elapsed


async def raw_latency(bootstrap: str, rate: int, seconds: float) -> list[float]:
    topic = f"bench.rawlat.{uuid.uuid4().hex[:8]}"
    await ensure_topics(bootstrap, [TopicSpec(topic, partitions=3)])
    producer = AIOKafkaProducer(bootstrap_servers=bootstrap, acks="all", enable_idempotence=True, linger_ms=0)
    consumer = AIOKafkaConsumer(
        topic,
        bootstrap_servers=bootstrap,
        group_id=f"raw-{topic}",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        fetch_max_wait_ms=5,
    )
    await producer.start()
    await consumer.start()
    await asyncio.sleep(1.0)
    n = int(rate * seconds)
    lat: list[float] = []

    async def produce() -> None:
        start = time.perf_counter()
        for i in range(n):
            target = start + i / rate
            delay = target - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            await producer.send(topic, str(time.time()).encode(), key=f"k{i % KEYS}".encode())
        await producer.flush()

    async def consume() -> None:
        while len(lat) < n:
            batch = await consumer.getmany(timeout_ms=200)
            now = time.time()
            for recs in batch.values():
                lat.extend(now - float(r.value) for r in recs)
            if batch:
                await consumer.commit()

    await asyncio.gather(produce(), consume())
    await producer.stop()
    await consumer.stop()
    return lat


# -- the Distretto pipeline ---------------------------------------------------------------


@contextlib.asynccontextmanager
async def pipeline(bootstrap: str, url: str, schema: str | None):  # type: ignore[no-untyped-def]
    os.environ["DISTRETTO_TOPIC_PREFIX"] = f"b{uuid.uuid4().hex[:8]}."
    await ensure_topics(bootstrap, [TOPIC])
    await upgrade_async(MIGRATIONS, url, schema)
    db = Database(url, schema=schema)
    relay = OutboxRelay(db, service="bench", bootstrap_servers=bootstrap, poll_interval=0.5)
    runner = ConsumerRunner(consumers, db=db, service="bench", bootstrap_servers=bootstrap)
    broker = KafkaBroker(bootstrap, logger=None)
    runner.attach(broker)
    await relay.start()
    await broker.start()
    await asyncio.sleep(2.0)  # consumer group joined
    Probe.latencies, Probe.handled = [], 0
    try:
        yield db
    finally:
        await broker.stop()
        await runner.close()
        await relay.stop()
        await db.dispose()


async def write(db: Database, events: list[BenchEvent]) -> None:
    async with db.transaction() as session:
        for e in events:
            add_event(session, e, source="/distretto/bench")


async def pipeline_throughput(bootstrap: str, url: str, schema: str | None, n: int, per_tx: int) -> float:
    async with pipeline(bootstrap, url, schema) as db:
        t0 = time.perf_counter()
        for start in range(0, n, per_tx):
            await write(
                db,
                [
                    BenchEvent(key=f"k{i % KEYS}", seq=i, sent_at=time.time())
                    for i in range(start, min(n, start + per_tx))
                ],
            )
        while Probe.handled < n:
            await asyncio.sleep(0.05)
        return n / (time.perf_counter() - t0)


async def pipeline_latency(bootstrap: str, url: str, schema: str | None, rate: int, seconds: float) -> list[float]:
    async with pipeline(bootstrap, url, schema) as db:
        n = int(rate * seconds)
        start = time.perf_counter()
        for i in range(n):
            delay = start + i / rate - time.perf_counter()
            if delay > 0:
                await asyncio.sleep(delay)
            await write(db, [BenchEvent(key=f"k{i % KEYS}", seq=i, sent_at=time.time())])
        deadline = time.perf_counter() + 60
        while Probe.handled < n and time.perf_counter() < deadline:
            await asyncio.sleep(0.05)
        return list(Probe.latencies)


def postgres_url() -> str | None:
    url = os.environ.get("DISTRETTO_TEST_POSTGRES_URL")
    if url:
        return url
    try:
        out = subprocess.run(
            ["bash", str(ROOT / "deploy/postgres/ensure-postgres.sh")], capture_output=True, text=True, check=True
        )
        return out.stdout.strip().splitlines()[-1]
    except (subprocess.CalledProcessError, IndexError):
        return None


async def main_async(args: argparse.Namespace) -> None:
    import logging

    logging.disable(logging.WARNING)
    import structlog

    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.ERROR))
    with tempfile.TemporaryDirectory() as tmp, session_broker(Path(tmp)) as bootstrap:
        print(
            f"broker {bootstrap}; {args.events} events, {KEYS} keys, 3 partitions; "
            f"latency at {args.rate} events/s for {args.seconds:.0f}s",
            flush=True,
        )
        raw = await raw_throughput(bootstrap, args.events)
        raw_lat = await raw_latency(bootstrap, args.rate, args.seconds)
        rows = [("raw aiokafka produce→consume", raw, None, raw_lat)]
        backends: list[tuple[str, str, str | None]] = [("sqlite", f"sqlite+aiosqlite:///{tmp}/bench.db", None)]
        pg = postgres_url()
        if pg:
            backends.append(("postgresql", pg, f"bench_{uuid.uuid4().hex[:8]}"))
        else:
            print("PostgreSQL not available: its rows are missing", flush=True)
        for name, url, schema in backends:
            for per_tx in args.per_tx:
                tput = await pipeline_throughput(bootstrap, url, schema, args.events, per_tx)
                lat = await pipeline_latency(bootstrap, url, schema, args.rate, args.seconds)
                rows.append((f"distretto {name}, {per_tx} event(s)/transaction", tput, tput / raw, lat))
                if name == "sqlite":
                    Path(f"{tmp}/bench.db").unlink(missing_ok=True)
            if schema:
                await drop_schema(url, schema)
        print()
        print(f"{'pipeline':48s} {'events/s':>10s} {'ratio':>7s} {'p50 ms':>8s} {'p99 ms':>8s} {'lat n':>7s}")
        for label, tput, ratio, lat in rows:
            r = f"{ratio:.2f}" if ratio is not None else "1.00"
            print(f"{label:48s} {tput:10.0f} {r:>7s} {pct(lat, 0.5):8.1f} {pct(lat, 0.99):8.1f} {len(lat):7d}")
        if any(len(lat) == 0 for *_, lat in rows):
            print("(a row with lat n = 0 did not finish within the wait)")
        print(
            f"\nmedian of latencies is {statistics.median(raw_lat) * 1000:.1f} ms for raw; "
            "latency = written → handler ran (raw: produced → received)"
        )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--events", type=int, default=20000)
    parser.add_argument("--rate", type=int, default=500)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument(
        "--per-tx", type=int, nargs="+", default=[1, 100], help="events written per transaction (one row each)"
    )
    asyncio.run(main_async(parser.parse_args()))


if __name__ == "__main__":
    main()
