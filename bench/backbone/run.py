"""Backbone benchmark: outbox → Kafka → consumer → inbox, beside raw aiokafka on the same broker.

The Distretto pipeline runs as in production, in two processes that share only Kafka:

- the *producer* process runs the use case (one row in ``ledger_entry`` plus ``add_event`` in one
  ``Database.transaction()``) and the :class:`OutboxRelay`, on its own database;
- the *consumer* process runs a :class:`ConsumerRunner` (FastStream batch subscriber, inbox, one
  effect row inserted per event by the handler) on another database (its own service's).

Raw aiokafka produce→consume is measured on the same broker, in one process and in two (producer
and consumer in separate processes, like the pipeline). Printed for each:

- throughput: N events produced (written) until the consumer has received (handled and committed)
  the last one, in events/s, and the ratio to raw two-process;
- latency at a fixed rate (default 500 events/s): p50 / p99 from the use case (the event carries
  ``time.time()`` taken just before its transaction) to the commit of the handler's transaction
  (raw: from ``send`` to receipt).

Usage: uv run python bench/backbone/run.py [--events 20000] [--rate 500] [--seconds 10]
       [--per-tx 1 100] [--backends sqlite postgresql] [--profile DIR]
Kafka: KAFKA_BOOTSTRAP_SERVERS if set, else a throwaway broker. PostgreSQL:
DISTRETTO_TEST_POSTGRES_URL if set, else deploy/postgres/ensure-postgres.sh.
``--profile DIR`` writes one cProfile file per process and run (read with ``python -m pstats``).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import multiprocessing as mp
import os
import queue
import subprocess
import sys
import tempfile
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

import sqlalchemy as sa
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from distretto_shared.consumer import ConsumerRunner, Consumers, Outcome, Record
from distretto_shared.db import Database
from distretto_shared.events import Event, EventMeta
from distretto_shared.kafka_security import default_credentials
from distretto_shared.topics import TopicSpec, ensure_topics

TOPIC = TopicSpec("bench.events.v1", partitions=3)
KEYS = 16
WARMUP = 50
"""Events sent before the measurement (connections, consumer group, caches); not counted."""


class BenchEvent(Event):
    event_type = "distretto.bench.event.v1"
    topic = TOPIC.name
    subject_field = "key"

    key: str
    seq: int
    sent_at: float


@dataclass(frozen=True)
class Spec:
    """One measured run, as sent to both child processes."""

    kind: str  # "raw" or "distretto"
    mode: str  # "throughput" or "rate"
    bootstrap: str
    topic: str  # raw: the physical topic; distretto: the topic prefix
    n: int
    per_tx: int = 1
    rate: int = 500
    producer_url: str = ""
    producer_schema: str | None = None
    consumer_url: str = ""
    consumer_schema: str | None = None
    profile: str | None = None


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    values = sorted(values)
    return values[min(len(values) - 1, int(q * len(values)))] * 1000


def quiet() -> None:
    import logging

    import structlog

    logging.disable(logging.WARNING)
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.ERROR))


def run_child(fn: Any, spec: Spec, *args: Any) -> None:
    """Entry point of a child process: an asyncio run, optionally under cProfile."""
    quiet()
    if spec.kind == "distretto":
        os.environ["DISTRETTO_TOPIC_PREFIX"] = spec.topic
    if not spec.profile:
        asyncio.run(fn(spec, *args))
        return
    import cProfile

    prof = cProfile.Profile()
    prof.enable()
    try:
        asyncio.run(fn(spec, *args))
    finally:
        prof.disable()
        prof.dump_stats(spec.profile)


async def paced(n: int, rate: int, step: Any) -> None:
    """Call ``step(i)`` for i in range(n) at ``rate`` per second (catching up without sleeping if late)."""
    start = time.perf_counter()
    for i in range(n):
        delay = start + i / rate - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        await step(i)


async def wait_for(flag: Any, stop: Any) -> None:
    while not flag.is_set() and not stop.is_set():
        await asyncio.sleep(0.01)


# -- raw aiokafka -------------------------------------------------------------------------


def raw_payload(seq: int) -> bytes:
    return f"{seq} {time.time()!r}".encode()


async def raw_producer(spec: Spec, go: Any, stop: Any, results: Any) -> None:
    producer = AIOKafkaProducer(
        bootstrap_servers=spec.bootstrap,
        **default_credentials().aiokafka(),
        acks="all",
        enable_idempotence=True,
        linger_ms=2 if spec.mode == "throughput" else 0,
    )
    await producer.start()
    try:
        for i in range(WARMUP):
            await producer.send(spec.topic, raw_payload(-1 - i), key=f"k{i % KEYS}".encode())
        await producer.flush()
        await wait_for(go, stop)
        t0 = time.time()
        results.put(("t0", t0))
        if spec.mode == "throughput":
            futs = [await producer.send(spec.topic, raw_payload(i), key=f"k{i % KEYS}".encode()) for i in range(spec.n)]
            await asyncio.gather(*futs)
        else:

            async def step(i: int) -> None:
                await producer.send(spec.topic, raw_payload(i), key=f"k{i % KEYS}".encode())

            await paced(spec.n, spec.rate, step)
            await producer.flush()
        await wait_for(stop, stop)
    finally:
        await producer.stop()


async def raw_consumer(spec: Spec, warm: Any, stop: Any, results: Any) -> None:
    consumer = AIOKafkaConsumer(
        spec.topic,
        bootstrap_servers=spec.bootstrap,
        **default_credentials().aiokafka(),
        group_id=f"raw-{spec.topic}",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        fetch_max_wait_ms=5 if spec.mode == "rate" else 500,
    )
    await consumer.start()
    try:
        await raw_consume(consumer, spec, warm, stop, results)
    finally:
        await consumer.stop()


async def raw_consume(consumer: AIOKafkaConsumer, spec: Spec, warm: Any, stop: Any, results: Any) -> None:
    warmed = got = 0
    lat: list[float] = []
    while got < spec.n and not stop.is_set():
        batch = await consumer.getmany(timeout_ms=200)
        now = time.time()
        for recs in batch.values():
            for r in recs:
                seq, sent = r.value.split()
                if int(seq) < 0:
                    warmed += 1
                    continue
                got += 1
                lat.append(now - float(sent))
        if batch:
            await consumer.commit()
        if warmed >= WARMUP and not warm.is_set():
            warm.set()
    results.put(("done", time.time(), got, lat))


async def raw_single_process(spec: Spec) -> tuple[float, list[float]]:
    """Raw produce→consume with producer and consumer in this process (one core)."""

    class Flag:
        def __init__(self) -> None:
            self.v = False

        def is_set(self) -> bool:
            return self.v

        def set(self) -> None:
            self.v = True

    results: queue.Queue[Any] = queue.Queue()
    go, warm, stop = Flag(), Flag(), Flag()
    consumer = AIOKafkaConsumer(
        spec.topic,
        bootstrap_servers=spec.bootstrap,
        **default_credentials().aiokafka(),
        group_id=f"raw-{spec.topic}",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
        fetch_max_wait_ms=5 if spec.mode == "rate" else 500,
    )
    await consumer.start()

    async def release() -> None:
        while not warm.is_set():
            await asyncio.sleep(0.01)
        go.set()

    async def consume() -> None:
        await raw_consume(consumer, spec, warm, Flag(), results)
        stop.set()

    try:
        await asyncio.gather(raw_producer(spec, go, stop, results), consume(), release())
    finally:
        await consumer.stop()
    t0 = end = 0.0
    lat: list[float] = []
    while not results.empty():
        item = results.get()
        if item[0] == "t0":
            t0 = item[1]
        else:
            end, lat = item[1], item[3]
    return spec.n / (end - t0), lat


# -- the Distretto pipeline ---------------------------------------------------------------


async def migrate(url: str, schema: str | None) -> None:
    from distretto_shared.migrations import upgrade_async
    from tests.backbone.example import MIGRATIONS

    await upgrade_async(MIGRATIONS, url, schema)


async def distretto_producer(spec: Spec, go: Any, stop: Any, results: Any) -> None:
    """The producing service: use case (state row + outbox event per transaction) and relay."""
    from distretto_shared.outbox import OutboxRelay, add_event
    from tests.backbone.example import entries

    db = Database(spec.producer_url, schema=spec.producer_schema)
    relay = OutboxRelay(db, service="bench", bootstrap_servers=spec.bootstrap, poll_interval=0.5)
    await relay.start()
    seq = 0

    async def use_case(count: int) -> None:
        nonlocal seq
        sent_at = time.time()
        async with db.transaction() as session:
            for _ in range(count):
                key = f"k{seq % KEYS}"
                await session.execute(entries.insert().values(account_id=key, amount=1, seq=seq))
                add_event(session, BenchEvent(key=key, seq=seq, sent_at=sent_at), source="/distretto/bench")
                seq += 1

    try:
        seq = -WARMUP
        for _ in range(WARMUP):
            await use_case(1)
        await wait_for(go, stop)
        seq = 0
        t0 = time.time()
        results.put(("t0", t0))
        if spec.mode == "throughput":
            for start in range(0, spec.n, spec.per_tx):
                await use_case(min(spec.per_tx, spec.n - start))
        else:

            async def step(_i: int) -> None:
                await use_case(1)

            await paced(spec.n, spec.rate, step)
        await wait_for(stop, stop)
    finally:
        await relay.stop()
        await db.dispose()


async def distretto_consumer(spec: Spec, warm: Any, stop: Any, results: Any) -> None:
    """The consuming service: ConsumerRunner with inbox and one effect row per event."""
    from faststream.kafka import KafkaBroker

    from tests.backbone.example import effects

    consumers = Consumers("bench-projection")
    pending: dict[str, float] = {}  # event id → sent_at, handled in the open transaction
    lat: list[float] = []
    state = {"warmed": 0, "got": 0}

    @consumers.handles(BenchEvent)
    async def on_event(ctx: object, session: sa.ext.asyncio.AsyncSession, event: BenchEvent, meta: EventMeta) -> None:
        await session.execute(effects.insert().values(event_id=meta.id, account_id=event.key, seq=event.seq))
        pending[meta.id] = event.sent_at if event.seq >= 0 else -1.0

    class TimedRunner(ConsumerRunner):
        """Stamps each event when the transaction that handled it has committed."""

        async def handle_batch(self, records: list[Record]) -> list[Outcome]:
            pending.clear()
            outcomes = await super().handle_batch(records)
            now = time.time()
            for sent_at in pending.values():
                if sent_at < 0:
                    state["warmed"] += 1
                else:
                    state["got"] += 1
                    lat.append(now - sent_at)
            pending.clear()
            if state["warmed"] >= WARMUP:
                warm.set()
            if state["got"] >= spec.n and not done.is_set():
                done.set()
            return outcomes

    done = asyncio.Event()
    db = Database(spec.consumer_url, schema=spec.consumer_schema)
    runner = TimedRunner(consumers, db=db, service="bench", bootstrap_servers=spec.bootstrap)
    broker = KafkaBroker(spec.bootstrap, logger=None, security=default_credentials().faststream())
    runner.attach(broker)
    await broker.start()
    try:
        while not done.is_set() and not stop.is_set():
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(done.wait(), 0.1)
        results.put(("done", time.time(), state["got"], lat))
        await wait_for(stop, stop)
    finally:
        await broker.stop()
        await runner.close()
        await db.dispose()


# -- orchestration ------------------------------------------------------------------------


def two_processes(spec: Spec, producer: Any, consumer: Any, timeout: float) -> tuple[float, list[float]]:
    """Run ``consumer`` and ``producer`` in two spawned processes; (events/s, latencies)."""
    ctx = mp.get_context("spawn")
    go, warm, stop = ctx.Event(), ctx.Event(), ctx.Event()
    results = ctx.Queue()
    prof = spec.profile
    cons_spec = Spec(**{**spec.__dict__, "profile": f"{prof}.consumer.prof" if prof else None})
    prod_spec = Spec(**{**spec.__dict__, "profile": f"{prof}.producer.prof" if prof else None})
    cproc = ctx.Process(target=run_child, args=(consumer, cons_spec, warm, stop, results))
    pproc = ctx.Process(target=run_child, args=(producer, prod_spec, go, stop, results))
    cproc.start()
    pproc.start()
    t0 = end = 0.0
    lat: list[float] = []
    got = 0
    try:
        if not warm.wait(60):
            raise RuntimeError("warm-up events never arrived")
        go.set()
        deadline = time.monotonic() + timeout
        while not end and time.monotonic() < deadline:
            try:
                item = results.get(timeout=1)
            except queue.Empty:
                continue
            if item[0] == "t0":
                t0 = item[1]
            else:
                end, got, lat = item[1], item[2], item[3]
        if not t0:
            t0 = results.get(timeout=5)[1]
    finally:
        stop.set()
        for p in (pproc, cproc):
            p.join(30)
            if p.is_alive():
                p.terminate()
                p.join()
    if not end or got < spec.n:
        return float("nan"), lat
    return spec.n / (end - t0), lat


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--events", type=int, default=20000)
    parser.add_argument("--rate", type=int, default=500)
    parser.add_argument("--seconds", type=float, default=10.0)
    parser.add_argument(
        "--per-tx", type=int, nargs="+", default=[1, 100], help="events written per transaction (one row each)"
    )
    parser.add_argument("--backends", nargs="+", default=["sqlite", "postgresql"])
    parser.add_argument("--no-raw", action="store_true", help="skip the raw aiokafka rows")
    parser.add_argument("--profile", type=Path, help="directory for cProfile output, one file per process")
    args = parser.parse_args()
    quiet()
    from distretto_dev.kafka_runner import session_broker
    from distretto_dev.testing import drop_schema

    if args.profile:
        args.profile.mkdir(parents=True, exist_ok=True)

    def prof(name: str) -> str | None:
        return str(args.profile / name) if args.profile else None

    n_rate = int(args.rate * args.seconds)
    rows: list[tuple[str, float, float, list[float]]] = []
    with tempfile.TemporaryDirectory() as tmp, session_broker(Path(tmp)) as bootstrap:
        print(
            f"broker {bootstrap}; {args.events} events, {KEYS} keys, {TOPIC.partitions} partitions; "
            f"latency at {args.rate} events/s for {args.seconds:.0f}s; {os.cpu_count()} cores",
            flush=True,
        )

        def raw_topic() -> str:
            topic = f"bench.raw.{uuid.uuid4().hex[:8]}"
            asyncio.run(ensure_topics(bootstrap, [TopicSpec(topic, partitions=TOPIC.partitions)]))
            return topic

        raw2 = float("nan")
        if not args.no_raw:
            tput, _ = asyncio.run(raw_single_process(Spec("raw", "throughput", bootstrap, raw_topic(), args.events)))
            _, lat = asyncio.run(
                raw_single_process(Spec("raw", "rate", bootstrap, raw_topic(), n_rate, rate=args.rate))
            )
            rows.append(("raw aiokafka, 1 process", tput, float("nan"), lat))
            spec = Spec("raw", "throughput", bootstrap, raw_topic(), args.events, profile=prof("raw-tput"))
            raw2, _ = two_processes(spec, raw_producer, raw_consumer, timeout=300)
            spec = Spec("raw", "rate", bootstrap, raw_topic(), n_rate, rate=args.rate, profile=prof("raw-rate"))
            _, lat = two_processes(spec, raw_producer, raw_consumer, timeout=args.seconds + 60)
            rows.append(("raw aiokafka, 2 processes", raw2, 1.0, lat))
            print(f"raw done: {rows[0][1]:.0f} ev/s in one process, {raw2:.0f} in two", flush=True)

        pg = postgres_url() if "postgresql" in args.backends else None
        if "postgresql" in args.backends and not pg:
            print("PostgreSQL not available: its rows are missing", flush=True)
        for backend in args.backends:
            if backend == "postgresql" and not pg:
                continue
            for per_tx in args.per_tx:
                for mode in ("throughput", "rate"):
                    if mode == "rate" and per_tx != args.per_tx[0]:
                        continue  # the fixed-rate run writes one event per use case
                    prefix = f"b{uuid.uuid4().hex[:8]}."
                    if backend == "sqlite":
                        urls = [f"sqlite+aiosqlite:///{tmp}/{prefix}{side}.db" for side in ("producer", "consumer")]
                        schemas: list[str | None] = [None, None]
                    else:
                        assert pg is not None
                        urls = [pg, pg]
                        schemas = [f"bench_{prefix[1:-1]}_{side}" for side in ("producer", "consumer")]
                    for url, schema in zip(urls, schemas, strict=True):
                        asyncio.run(migrate(url, schema))
                    os.environ["DISTRETTO_TOPIC_PREFIX"] = prefix
                    asyncio.run(ensure_topics(bootstrap, [TOPIC]))
                    spec = Spec(
                        "distretto",
                        mode,
                        bootstrap,
                        prefix,
                        args.events if mode == "throughput" else n_rate,
                        per_tx=per_tx if mode == "throughput" else 1,
                        rate=args.rate,
                        producer_url=urls[0],
                        producer_schema=schemas[0],
                        consumer_url=urls[1],
                        consumer_schema=schemas[1],
                        profile=prof(f"{backend}-{mode}-{per_tx}"),
                    )
                    tput, lat = two_processes(spec, distretto_producer, distretto_consumer, timeout=600)
                    if mode == "throughput":
                        rows.append((f"distretto {backend}, {per_tx} ev/tx", tput, tput / raw2, []))
                        print(f"{backend} {per_tx} ev/tx: {tput:.0f} ev/s", flush=True)
                    else:
                        label, t, r, _ = rows[-1]
                        rows[-1] = (label, t, r, lat)
                    for schema in schemas:
                        if schema:
                            asyncio.run(drop_schema(urls[0], schema))

        print()
        print("throughput: producer + consumer in separate processes unless said; ratio = to raw, 2 processes")
        print(f"latency at {args.rate} ev/s: use case → handler's commit (raw: send → receipt)")
        print(f"{'pipeline':34s} {'events/s':>10s} {'ratio':>7s} {'p50 ms':>8s} {'p99 ms':>8s} {'lat n':>7s}")
        for label, tput, ratio, lat in rows:
            r = f"{ratio:.2f}" if ratio == ratio else "-"
            p = f"{pct(lat, 0.5):8.1f} {pct(lat, 0.99):8.1f} {len(lat):7d}" if lat else f"{'':8s} {'':8s} {'':7s}"
            print(f"{label:34s} {tput:10.0f} {r:>7s} {p}")
        if any(lat and len(lat) < n_rate for *_, lat in rows):
            print(f"(a row with lat n < {n_rate} did not finish within the wait)")


if __name__ == "__main__":
    main()
