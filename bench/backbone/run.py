"""Backbone benchmark: the Distretto pipeline, the lean same-architecture baseline and raw aiokafka.

All three move the same events through the same throwaway broker (SASL/SCRAM + ACLs) in one
invocation, each run with its own topic and consumer group, producer and consumer in two
processes that share only Kafka:

- **Distretto**: the producing process runs the use case (state rows + ``add_events`` in one
  ``Database.core_transaction()``, the Core unit of work) and the :class:`OutboxRelay`; the consuming
  process runs a :class:`ConsumerRunner` (FastStream batch subscriber, inbox, one effect row per
  event, a ``handles_batch(core=True)`` handler); the first line printed names the API used;
- **lean**: the same architecture written by hand on the same migrated tables (``lean.py``, the
  yardstick: executemany use case, a relay that claims 500 rows, sends, deletes on one connection,
  a consumer that claims its batch in the inbox with one statement);
- **raw aiokafka**: an idempotent ``acks=all`` producer and a consumer committing its offsets,
  no database.

Measured, on each database (PostgreSQL and SQLite):

- throughput at 1 and 100 events per transaction (raw: per ``send`` … wait-for-acks round):
  N events from the first write until the consumer committed the last one, events/s;
- latency at a fixed rate (500 events/s, one event per transaction): p50 / p99 from the commit of
  the use case's transaction to the commit of the handler's (raw: from ``send`` to receipt).

Before the measured runs, an unmeasured raw run warms the broker up (its first consumer group
creates ``__consumer_offsets``; its request paths are compiled), so no pipeline pays for that.
The ratios Distretto / lean are printed beside them, and for the throughput runs the CPU time of
each process per 1,000 events (producer + consumer, all threads, over the measured part) with the
ratio lean / Distretto — a busy machine swings events/s from run to run, CPU per event far less —
and the CPU the PostgreSQL server and the Kafka broker spent per 1,000 events over the whole run
(on 2 cores the servers share the CPU with the pipelines, so their share limits events/s too; the
broker is the bench's own, but every process named ``postgres`` is counted: read that share on an
idle machine). ``--json`` prints the figures as
JSON on stdout (the table then goes to stderr).

Usage: uv run python bench/backbone/run.py [--events 4000] [--rate 500] [--seconds 8]
       [--per-tx 1 100] [--backends postgresql sqlite] [--pipelines distretto lean raw]
       [--modes throughput latency] [--postgres-url URL] [--json] [--profile DIR]
Kafka: KAFKA_BOOTSTRAP_SERVERS if set, else a throwaway broker. PostgreSQL: --postgres-url, else
DISTRETTO_BENCH_POSTGRES_URL, else DISTRETTO_TEST_POSTGRES_URL, else deploy/postgres/ensure-postgres.sh;
each run migrates and then drops its own schemas. ``--profile DIR`` writes one cProfile file per
process and run (read with ``python -m pstats``).
Every child process dies with the benchmark (also on Ctrl-C, SIGTERM or a kill of the parent).

One file (over 600 lines): the runs of the three pipelines, their child processes, the CPU and
latency measurement and the report share the run's settings and process plumbing; only the lean
yardstick lives apart (``lean.py``), so it can be read on its own.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import inspect
import json
import multiprocessing as mp
import os
import queue
import signal
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import Any, TextIO

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from aiokafka import AIOKafkaConsumer, AIOKafkaProducer

from distretto_shared.events import Event
from distretto_shared.kafka_security import default_credentials
from distretto_shared.topics import TopicSpec, ensure_topics, topic_name

TOPIC = TopicSpec("bench.events.v1", partitions=3)
KEYS = 16
SOURCE = "/distretto/bench"
WARMUP = 50
"""Events sent before the measurement (connections, consumer group, caches); not counted."""
PIPELINES = ("distretto", "lean", "raw")
LABELS = {"distretto": "Distretto", "lean": "lean same-architecture", "raw": "raw aiokafka"}


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

    pipeline: str  # "distretto", "lean" or "raw"
    mode: str  # "throughput" or "latency"
    bootstrap: str
    prefix: str  # topic prefix of this run (its topic: prefix + TOPIC.name)
    run_id: str  # unique per run: consumer groups and service names
    n: int  # events to write; 0: write for ``duration`` seconds
    per_tx: int = 1
    duration: float = 5.0
    rate: int = 500
    producer_url: str = ""
    producer_schema: str | None = None
    consumer_url: str = ""
    consumer_schema: str | None = None
    profile: str | None = None
    relay_retention: float | None = None  # None: the services' default


@dataclass
class Result:
    """What one run measured."""

    pipeline: str
    backend: str  # "postgresql", "sqlite" or "-" (raw)
    mode: str
    per_tx: int
    events: int
    events_per_s: float | None = None
    latencies: list[float] = field(default_factory=list)
    """Seconds, one per measured event (latency runs)."""
    reached: float | None = None
    """Latency runs: the rate the producer reached (below the asked rate: saturated), events/s."""
    effects: tuple[int, int] | None = None
    """After the run, the consumer's effect rows: (all, distinct events) — warm-up included."""
    cpu: dict[str, float] = field(default_factory=dict)
    """Throughput runs: CPU seconds (all threads) of each process over the measured part, by side —
    the producer from the first measured write until the run ended, the consumer from the first
    measured event to the last one. Robust to a busy machine, unlike events/s."""

    def cpu_per_1000(self, side: str) -> float | None:
        """CPU milliseconds per 1,000 events of one side."""
        seconds = self.cpu.get(side)
        return seconds / self.events * 1e6 if seconds is not None and self.events else None

    def server_cpu_per_1000(self, side: str) -> float | None:
        """CPU milliseconds per 1,000 events of a server (``postgresql`` or ``broker``) over the whole
        run, warm-up included: divided by every event the consumer handled."""
        seconds = self.cpu.get(f"server:{side}")
        moved = self.effects[0] if self.effects else None
        return seconds / moved * 1e6 if seconds is not None and moved else None

    def pct(self, q: float) -> float | None:
        if not self.latencies:
            return None
        values = sorted(self.latencies)
        return values[min(len(values) - 1, int(q * len(values)))] * 1000


# -- child processes ----------------------------------------------------------------------


def die_with_parent() -> None:
    """Linux: this process gets SIGKILL when the benchmark dies, however it dies."""
    with contextlib.suppress(Exception):
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGKILL)  # PR_SET_PDEATHSIG
    if os.getppid() == 1:
        os._exit(1)


def quiet() -> None:
    import logging

    import structlog

    logging.disable(logging.WARNING)
    structlog.configure(wrapper_class=structlog.make_filtering_bound_logger(logging.ERROR))


def run_child(fn: Any, spec: Spec, *args: Any) -> None:
    """Entry point of a child process: an asyncio run, optionally under cProfile."""
    die_with_parent()
    signal.signal(signal.SIGINT, signal.SIG_IGN)  # Ctrl-C is the parent's: it stops us
    quiet()
    os.environ["DISTRETTO_TOPIC_PREFIX"] = spec.prefix
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


async def paced(n: int, rate: int, step: Callable[[int], Awaitable[None]]) -> None:
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


def new_events(first: int, count: int) -> list[BenchEvent]:
    sent_at = time.time()
    return [BenchEvent(key=f"k{s % KEYS}", seq=s, sent_at=sent_at) for s in range(first, first + count)]


async def write_all(spec: Spec, write: Callable[[int, int], Awaitable[None]], total: Any) -> None:
    """The measured throughput writes: ``write(first_seq, count)`` per transaction; sets ``total`` at the end."""
    written = 0
    deadline = time.monotonic() + spec.duration
    while (written < spec.n) if spec.n else (time.monotonic() < deadline):
        count = min(spec.per_tx, spec.n - written) if spec.n else spec.per_tx
        await write(written, count)
        written += count
    total.value = written


async def drive(
    spec: Spec, use_case: Callable[[list[BenchEvent]], Awaitable[None]], go: Any, stop: Any, results: Any, total: Any
) -> None:
    """The producing side's script: warm-up, then the measured writes; reports each commit's time."""
    for i in range(WARMUP):
        await use_case(new_events(-WARMUP + i, 1))
    await wait_for(go, stop)
    commits: list[tuple[int, float]] = []
    cpu0 = time.process_time()
    results.put(("t0", time.time()))
    if spec.mode == "throughput":

        async def write(first: int, count: int) -> None:
            await use_case(new_events(first, count))

        await write_all(spec, write, total)
    else:
        total.value = spec.n

        async def step(i: int) -> None:
            await use_case(new_events(i, 1))
            commits.append((i, time.time()))

        await paced(spec.n, spec.rate, step)
    results.put(("commits", commits))
    await wait_for(stop, stop)
    results.put(("cpu", "producer", time.process_time() - cpu0))


class Tally:
    """The consuming side's count: warm-up events, measured events and their commit times."""

    def __init__(self, spec: Spec, warm: Any, total: Any) -> None:
        self.spec = spec
        self.total = total
        self.warm = warm
        self.warmed = 0
        self.handled: list[tuple[int, float]] = []
        self.raw_latencies: list[float] = []
        """Raw aiokafka only: send → receipt, seconds (its records carry their send time)."""
        self.done = asyncio.Event()
        self.cpu0: float | None = None

    def add(self, seq: int, committed: float) -> None:
        if seq < 0:
            self.warmed += 1
            if self.warmed >= WARMUP:
                self.warm.set()
            return
        if self.cpu0 is None:
            # The CPU of the batch that held the first measured event is left out; one batch of many.
            self.cpu0 = time.process_time()
        self.handled.append((seq, committed))
        self.check()

    def check(self) -> None:
        """Done once the producer has said how many it wrote and all of them were handled."""
        if 0 <= self.total.value <= len(self.handled):
            self.done.set()

    def report(self, results: Any) -> None:
        end = max((t for _, t in self.handled), default=0.0)
        results.put(("done", end, len(self.handled), self.handled, self.raw_latencies))
        if self.cpu0 is not None:
            results.put(("cpu", "consumer", time.process_time() - self.cpu0))

    async def wait(self, stop: Any) -> None:
        while not self.done.is_set() and not stop.is_set():
            self.check()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self.done.wait(), 0.1)


# -- raw aiokafka -------------------------------------------------------------------------


async def raw_producer(spec: Spec, go: Any, stop: Any, results: Any, total: Any) -> None:
    topic = topic_name(TOPIC.name)
    producer = AIOKafkaProducer(
        bootstrap_servers=spec.bootstrap,
        **default_credentials().aiokafka(),
        acks="all",
        enable_idempotence=True,
        max_batch_size=256 * 1024,
    )
    await producer.start()

    def payload(seq: int) -> bytes:
        return f"{seq} {time.time()!r}".encode()

    try:
        for i in range(WARMUP):
            await producer.send(topic, payload(-1 - i), key=f"k{i % KEYS}".encode())
        await producer.flush()
        await wait_for(go, stop)
        results.put(("t0", time.time()))
        sends: list[tuple[int, float]] = []
        if spec.mode == "throughput":

            async def write(first: int, count: int) -> None:
                seqs = range(first, first + count)
                futs = [await producer.send(topic, payload(i), key=f"k{i % KEYS}".encode()) for i in seqs]
                await asyncio.gather(*futs)

            await write_all(spec, write, total)
        else:
            total.value = spec.n

            async def step(i: int) -> None:
                await producer.send(topic, payload(i), key=f"k{i % KEYS}".encode())
                sends.append((i, time.time()))

            await paced(spec.n, spec.rate, step)
            await producer.flush()
        results.put(("commits", sends))
        await wait_for(stop, stop)
    finally:
        await producer.stop()


async def raw_consumer(spec: Spec, warm: Any, stop: Any, results: Any, total: Any) -> None:
    consumer = AIOKafkaConsumer(
        topic_name(TOPIC.name),
        bootstrap_servers=spec.bootstrap,
        **default_credentials().aiokafka(),
        group_id=f"bench-raw.{spec.run_id}",
        auto_offset_reset="earliest",
        enable_auto_commit=False,
    )
    await consumer.start()
    tally = Tally(spec, warm, total)
    try:
        while not tally.done.is_set() and not stop.is_set():
            batch = await consumer.getmany(timeout_ms=200)
            now = time.time()
            for recs in batch.values():
                for r in recs:
                    seq, sent = r.value.split()
                    if int(seq) >= 0:
                        tally.raw_latencies.append(now - float(sent))
                    tally.add(int(seq), now)
            if batch:
                await consumer.commit()
            tally.check()
        tally.report(results)
        await wait_for(stop, stop)
    finally:
        await consumer.stop()


# -- the Distretto pipeline ---------------------------------------------------------------


async def migrate(url: str, schema: str | None) -> None:
    from distretto_shared.migrations import upgrade_async
    from tests.backbone.example import MIGRATIONS

    await upgrade_async(MIGRATIONS, url, schema)


def relay_settings(retention: float | None = None) -> dict[str, Any]:
    """The relay as the services run it: their default settings, for what this relay takes."""
    from distretto_shared.outbox import OutboxRelay
    from distretto_shared.settings import ServiceSettings

    fields = ServiceSettings.model_fields
    wanted = {
        "batch_size": "relay_batch_size",
        "poll_interval": "relay_poll_interval",
        "retention": "relay_retention_seconds",
    }
    accepted = inspect.signature(OutboxRelay).parameters
    settings = {arg: fields[name].default for arg, name in wanted.items() if arg in accepted and name in fields}
    if retention is not None and "retention" in settings:
        settings["retention"] = retention  # --relay-retention: the published rows kept, or deleted (0)
    return settings


def distretto_api() -> str:
    """Which unit of work the Distretto pipeline uses here (the Core one where the backbone has it)."""
    from distretto_shared.db import Database

    if hasattr(Database, "core_transaction"):
        return "Database.core_transaction() + add_events, handles_batch(core=True)"
    return "Database.transaction() (ORM session)"


async def distretto_producer(spec: Spec, go: Any, stop: Any, results: Any, total: Any) -> None:
    """The producing service: use case (state rows + outbox events per transaction) and relay."""
    from distretto_shared import outbox
    from distretto_shared.db import Database
    from tests.backbone.example import entries

    db = Database(spec.producer_url, schema=spec.producer_schema)
    relay = outbox.OutboxRelay(
        db, service=f"bench{spec.run_id}", bootstrap_servers=spec.bootstrap, **relay_settings(spec.relay_retention)
    )
    add_events = getattr(outbox, "add_events", None)  # the batch form, where the backbone has it
    core = hasattr(db, "core_transaction") and add_events is not None
    insert_entries = entries.insert()  # built once, as a service's module-level statement would be
    await relay.start()

    async def use_case(events: list[BenchEvent]) -> None:
        rows = [{"account_id": e.key, "amount": 1, "seq": e.seq} for e in events]
        if core and add_events is not None:  # the Core unit of work: no ORM session on the hot path
            async with db.core_transaction() as uow:
                await uow.execute(insert_entries, rows)
                add_events(uow, events, source=SOURCE)
            return
        async with db.transaction() as session:
            await session.execute(insert_entries, rows)
            if add_events is not None and len(events) > 1:
                add_events(session, events, source=SOURCE)
            else:
                for e in events:
                    outbox.add_event(session, e, source=SOURCE)

    try:
        await drive(spec, use_case, go, stop, results, total)
    finally:
        await relay.stop()
        await db.dispose()


async def distretto_consumer(spec: Spec, warm: Any, stop: Any, results: Any, total: Any) -> None:
    """The consuming service: ConsumerRunner with inbox and one effect row per event."""
    from faststream.kafka import KafkaBroker
    from sqlalchemy import event as sa_event
    from sqlalchemy.orm import Session

    from distretto_shared.consumer import ConsumerRunner, Consumers
    from distretto_shared.db import Database
    from tests.backbone.example import effects

    consumers = Consumers("bench-projection")
    tally = Tally(spec, warm, total)
    pending: dict[int, list[int]] = {}  # id(session) → seqs handled in its open transaction

    # The handler's commit time, taken when its session has committed (whatever the runner's internals).
    @sa_event.listens_for(Session, "after_commit")
    def committed(session: Session) -> None:
        seqs = pending.pop(id(session), None)
        if seqs:
            now = time.time()
            for seq in seqs:
                tally.add(seq, now)

    @sa_event.listens_for(Session, "after_rollback")
    def rolled_back(session: Session) -> None:
        pending.pop(id(session), None)

    insert_effects = effects.insert()  # built once, as a service's module-level statement would be

    def done(seqs: list[int]) -> Callable[[], None]:
        def committed() -> None:  # the handler's commit time
            now = time.time()
            for seq in seqs:
                tally.add(seq, now)

        return committed

    if "core" in inspect.signature(getattr(consumers, "handles_batch", lambda: None)).parameters:

        @consumers.handles_batch(BenchEvent, core=True)  # the Core unit of work: claim, effects, commit
        async def on_core_batch(ctx: object, uow: Any, batch: list[tuple[BenchEvent, Any]]) -> None:
            rows = [{"event_id": meta.id, "account_id": event.key, "seq": event.seq} for event, meta in batch]
            await uow.execute(insert_effects, rows)
            uow.after_commit(done([event.seq for event, _ in batch]))

    elif hasattr(consumers, "handles_batch"):  # a handler of the whole batch, where the backbone has it

        @consumers.handles_batch(BenchEvent)
        async def on_batch(ctx: object, session: Any, batch: list[tuple[BenchEvent, Any]]) -> None:
            rows = [{"event_id": meta.id, "account_id": event.key, "seq": event.seq} for event, meta in batch]
            await session.execute(insert_effects, rows)
            pending.setdefault(id(session.sync_session), []).extend(event.seq for event, _ in batch)

    else:

        @consumers.handles(BenchEvent)
        async def on_event(ctx: object, session: Any, event: BenchEvent, meta: Any) -> None:
            await session.execute(effects.insert().values(event_id=meta.id, account_id=event.key, seq=event.seq))
            pending.setdefault(id(session.sync_session), []).append(event.seq)

    db = Database(spec.consumer_url, schema=spec.consumer_schema)
    runner = ConsumerRunner(consumers, db=db, service=f"bench{spec.run_id}", bootstrap_servers=spec.bootstrap)
    broker = KafkaBroker(spec.bootstrap, logger=None, security=default_credentials().faststream())
    runner.attach(broker)
    await broker.start()
    try:
        await tally.wait(stop)
        tally.report(results)
        await wait_for(stop, stop)
    finally:
        await broker.stop()
        await runner.close()
        await db.dispose()


# -- the lean baseline --------------------------------------------------------------------


async def lean_producer(spec: Spec, go: Any, stop: Any, results: Any, total: Any) -> None:
    from bench.backbone.lean import Producer

    producer = Producer(spec.producer_url, spec.producer_schema, bootstrap=spec.bootstrap, source=SOURCE)
    await producer.start()

    async def use_case(events: list[BenchEvent]) -> None:
        await producer.use_case([(e.key, 1, e.seq) for e in events], events)

    try:
        await drive(spec, use_case, go, stop, results, total)
    finally:
        await producer.stop()


async def lean_consumer(spec: Spec, warm: Any, stop: Any, results: Any, total: Any) -> None:
    from bench.backbone.lean import Consumer

    consumer = Consumer(
        spec.consumer_url,
        spec.consumer_schema,
        bootstrap=spec.bootstrap,
        topics=[topic_name(TOPIC.name)],
        group=f"bench-lean.{spec.run_id}",
        name="bench-projection",
    )
    await consumer.start()
    tally = Tally(spec, warm, total)
    try:
        while not tally.done.is_set() and not stop.is_set():
            for event, committed in await consumer.poll():
                tally.add(event.seq, committed)
            tally.check()
        tally.report(results)
        await wait_for(stop, stop)
    finally:
        await consumer.stop()


SIDES = {
    "distretto": (distretto_producer, distretto_consumer),
    "lean": (lean_producer, lean_consumer),
    "raw": (raw_producer, raw_consumer),
}


# -- orchestration ------------------------------------------------------------------------


def server_cpu(broker_dir: str | None = None) -> dict[tuple[str, str], tuple[str, float]]:
    """CPU seconds so far (user + system) of the machine's PostgreSQL server processes and Kafka brokers.

    Keyed by (pid, start time): every process named ``postgres`` (the server and its backends) and
    every JVM running ``kafka.Kafka`` — with ``broker_dir``, only the broker whose command line names
    it (the bench's own throwaway broker; other brokers on a shared machine are not counted) — each
    with its own CPU and that of the children it reaped. :func:`server_cpu_delta` takes the
    difference of two readings.
    """
    tick = os.sysconf("SC_CLK_TCK")
    found: dict[tuple[str, str], tuple[str, float]] = {}
    for pid in os.listdir("/proc"):
        if not pid.isdigit():
            continue
        try:
            with open(f"/proc/{pid}/stat", "rb") as f:
                stat = f.read()
            comm = stat[stat.index(b"(") + 1 : stat.rindex(b")")]
            if comm.startswith(b"postgres"):
                side = "postgresql"
            elif comm == b"java":
                with open(f"/proc/{pid}/cmdline", "rb") as f:
                    cmdline = f.read()
                if b"kafka.Kafka" not in cmdline or (broker_dir is not None and broker_dir.encode() not in cmdline):
                    continue
                side = "broker"
            else:
                continue
            fields = stat[stat.rindex(b")") + 2 :].split()
            # utime + stime, and cutime + cstime: the CPU of children it reaped — the postmaster's
            # holds every backend that ended (a connection the pipelines closed when they stopped)
            ticks = sum(int(fields[i]) for i in (11, 12, 13, 14))
            found[(pid, fields[19].decode())] = (side, ticks / tick)
        except (OSError, ValueError, IndexError):
            continue
    return found


def server_cpu_delta(
    before: dict[tuple[str, str], tuple[str, float]], after: dict[tuple[str, str], tuple[str, float]]
) -> dict[str, float]:
    """CPU seconds the servers spent between two readings, by side. A process that started in between
    counts whole; a PostgreSQL backend that ended in between is counted in its parent's reaped
    children's time (the postmaster reaps every backend)."""
    totals = {"postgresql": 0.0, "broker": 0.0}
    for key, (side, seconds) in after.items():
        totals[side] += seconds - before.get(key, (side, 0.0))[1]
    return totals


def two_processes(
    spec: Spec, timeout: float, cpu: dict[str, float] | None = None
) -> tuple[float | None, list[float], int, float | None]:
    """Run the consumer and the producer of ``spec.pipeline`` in two spawned processes.

    Returns (events/s or None when the run did not finish, latencies in seconds, events written, and for a
    latency run the rate the producer reached: below the asked rate, the producer was saturated).
    ``cpu`` gets each side's CPU seconds over the measured part, where the side reports it.
    """
    producer, consumer = SIDES[spec.pipeline]
    ctx = mp.get_context("spawn")
    go, warm, stop = ctx.Event(), ctx.Event(), ctx.Event()
    results = ctx.Queue()
    total = ctx.Value("q", -1)  # events written, set by the producer when it is done writing
    prof = spec.profile
    cons_spec = replace(spec, profile=f"{prof}.consumer.prof" if prof else None)
    prod_spec = replace(spec, profile=f"{prof}.producer.prof" if prof else None)
    procs = [
        ctx.Process(target=run_child, args=(consumer, cons_spec, warm, stop, results, total), daemon=True),
        ctx.Process(target=run_child, args=(producer, prod_spec, go, stop, results, total), daemon=True),
    ]
    for p in procs:
        p.start()
    t0 = end = 0.0
    got = 0
    handled: list[tuple[int, float]] = []
    raw_latencies: list[float] = []
    commits: list[tuple[int, float]] | None = None
    try:
        deadline = time.monotonic() + 120
        while not warm.wait(0.5):
            if time.monotonic() > deadline or not all(p.is_alive() for p in procs):
                raise RuntimeError(f"{spec.pipeline}: the warm-up events never arrived")
        go.set()
        deadline = time.monotonic() + timeout
        while (not end or commits is None) and time.monotonic() < deadline:
            try:
                item = results.get(timeout=0.5)
            except queue.Empty:
                if not all(p.is_alive() for p in procs):
                    break
                continue
            if item[0] == "t0":
                t0 = item[1]
            elif item[0] == "cpu":
                if cpu is not None:
                    cpu[item[1]] = item[2]
            elif item[0] == "commits":
                commits = item[1]
            else:
                end, got, handled, raw_latencies = item[1], item[2], item[3], item[4]
    finally:
        stop.set()
        for p in procs:
            p.join(10)
        for p in procs:
            if p.is_alive():
                p.kill()
                p.join()
        with contextlib.suppress(Exception):  # what the children said as they stopped
            while True:
                item = results.get_nowait()
                if item[0] == "cpu" and cpu is not None:
                    cpu[item[1]] = item[2]
        results.close()
        results.cancel_join_thread()
    written = max(0, total.value)
    if spec.mode == "throughput":
        return (written / (end - t0) if end and t0 and 0 < written <= got else None), [], written, None
    stamps = [t for _, t in commits or []]
    reached = (len(stamps) - 1) / (stamps[-1] - stamps[0]) if len(stamps) > 1 and stamps[-1] > stamps[0] else None
    if spec.pipeline == "raw":
        return None, raw_latencies, written, reached
    sent = dict(commits or [])
    return None, [t - sent[seq] for seq, t in handled if seq in sent], written, reached


def postgres_url(given: str | None) -> str | None:
    url = given or os.environ.get("DISTRETTO_BENCH_POSTGRES_URL") or os.environ.get("DISTRETTO_TEST_POSTGRES_URL")
    if url:
        return url
    try:
        out = subprocess.run(
            ["bash", str(ROOT / "deploy/postgres/ensure-postgres.sh")], capture_output=True, text=True, check=True
        )
        return out.stdout.strip().splitlines()[-1]
    except (subprocess.CalledProcessError, IndexError):
        return None


async def drop_topics(bootstrap: str, names: list[str]) -> None:
    from aiokafka.admin import AIOKafkaAdminClient

    admin = AIOKafkaAdminClient(bootstrap_servers=bootstrap, **default_credentials().aiokafka())
    await admin.start()
    try:
        with contextlib.suppress(Exception):
            await admin.delete_topics(names)
    finally:
        await admin.close()


async def count_effects(url: str, schema: str | None) -> tuple[int, int]:
    """The consumer's effect rows after a run: (rows, distinct events) — each event once, none lost."""
    import sqlalchemy as sa

    from distretto_shared.db import Database
    from tests.backbone.example import effects

    db = Database(url, schema=schema)
    try:
        async with db.read() as session:
            row = (await session.execute(sa.select(sa.func.count(), sa.func.count(sa.distinct(effects.c.seq))))).one()
            return int(row[0]), int(row[1])
    finally:
        await db.dispose()


def one_run(
    args: argparse.Namespace,
    bootstrap: str,
    tmp: str,
    pg: str | None,
    backend: str,
    pipeline: str,
    mode: str,
    per_tx: int,
) -> Result:
    """Fresh databases (migrated), a fresh topic and fresh consumer groups; one measurement."""
    run_id = uuid.uuid4().hex[:10]
    prefix = f"b{run_id}."
    n = (args.events or 0) if mode == "throughput" else int(args.rate * args.seconds)
    urls: list[str] = ["", ""]
    schemas: list[str | None] = [None, None]
    if backend == "sqlite":
        urls = [f"sqlite+aiosqlite:///{tmp}/{run_id}.{side}.db" for side in ("producer", "consumer")]
    elif backend == "postgresql":
        assert pg is not None
        urls = [pg, pg]
        schemas = [f"bench_{run_id}_{side}" for side in ("producer", "consumer")]
    if backend != "-":
        for url, schema in zip(urls, schemas, strict=True):
            asyncio.run(migrate(url, schema))
    os.environ["DISTRETTO_TOPIC_PREFIX"] = prefix
    asyncio.run(ensure_topics(bootstrap, [TOPIC]))
    profile = str(args.profile / f"{pipeline}-{backend}-{mode}-{per_tx}") if args.profile else None
    spec = Spec(
        pipeline=pipeline,
        mode=mode,
        bootstrap=bootstrap,
        prefix=prefix,
        run_id=run_id,
        n=n,
        per_tx=per_tx,
        duration=args.tput_seconds,
        rate=args.rate,
        producer_url=urls[0],
        producer_schema=schemas[0],
        consumer_url=urls[1],
        consumer_schema=schemas[1],
        profile=profile,
        relay_retention=args.relay_retention,
    )
    effects = None
    cpu: dict[str, float] = {}
    try:
        timeout = (args.seconds + 120) if mode == "latency" else args.timeout
        # The throwaway broker's folder is on its command line; an external broker (KAFKA_BOOTSTRAP_SERVERS)
        # is counted as every broker of the machine.
        broker_dir = None if os.environ.get("KAFKA_BOOTSTRAP_SERVERS", "").strip() else tmp
        before = server_cpu(broker_dir)
        tput, lat, n, reached = two_processes(spec, timeout=timeout, cpu=cpu)
        if mode == "throughput":
            for side, seconds in server_cpu_delta(before, server_cpu(broker_dir)).items():
                cpu[f"server:{side}"] = seconds
        if backend != "-":
            effects = asyncio.run(count_effects(urls[1], schemas[1]))
    finally:
        from distretto_dev.testing import drop_schema

        for url, schema in zip(urls, schemas, strict=True):
            if schema:
                asyncio.run(drop_schema(url, schema))
        topic = topic_name(TOPIC.name)
        asyncio.run(drop_topics(bootstrap, [topic, f"{topic}.dlq"]))
        os.environ.pop("DISTRETTO_TOPIC_PREFIX", None)
    return Result(pipeline, backend, mode, per_tx, n, tput, lat, reached, effects, cpu if mode == "throughput" else {})


def fmt(value: float | None, unit: str = "", digits: int = 0) -> str:
    if value is None:
        return "–"
    return f"{value:,.{digits}f}{unit}"


def ratio(a: float | None, b: float | None) -> float | None:
    return a / b if a is not None and b else None


def table(results: list[Result], args: argparse.Namespace, out: TextIO) -> dict[str, Any]:
    """Print one table per database; return the figures (and ratios) for ``--json``."""
    figures: dict[str, Any] = {}
    raw = [r for r in results if r.pipeline == "raw"]
    backends = [b for b in args.backends if any(r.backend == b for r in results)] or (["-"] if raw else [])
    cols = [f"{k} ev/tx" for k in args.per_tx] + [f"p50 @{args.rate}/s", f"p99 @{args.rate}/s", "rate reached"]
    for backend in backends:
        rows: dict[str, list[float | None]] = {}
        reached: dict[str, float | None] = {}
        for pipeline in args.pipelines:
            mine = [
                r
                for r in (raw if pipeline == "raw" else results)
                if r.pipeline == pipeline and (pipeline == "raw" or r.backend == backend)
            ]
            tputs = [
                next((r.events_per_s for r in mine if r.mode == "throughput" and r.per_tx == k), None)
                for k in args.per_tx
            ]
            lat = next((r for r in mine if r.mode == "latency"), None)
            rows[pipeline] = [*tputs, lat.pct(0.5) if lat else None, lat.pct(0.99) if lat else None]
            reached[pipeline] = lat.reached if lat else None
        name = {"postgresql": "PostgreSQL", "sqlite": "SQLite", "-": "no database"}[backend]
        print(
            f"\n{name}: events/s at k events per transaction; latency use-case commit → handler commit (raw: send → receipt)",
            file=out,
        )
        print(f"{'':26s}" + "".join(f"{c:>16s}" for c in cols), file=out)
        for pipeline, vals in rows.items():
            cells = [fmt(v) for v in vals[: len(args.per_tx)]] + [fmt(v, " ms", 1) for v in vals[len(args.per_tx) :]]
            cells.append(fmt(reached[pipeline]))
            print(f"{LABELS[pipeline]:26s}" + "".join(f"{c:>16s}" for c in cells), file=out)
        ratios: list[float | None] = []
        if "distretto" in rows and "lean" in rows:
            ratios = [ratio(d, lean) for d, lean in zip(rows["distretto"], rows["lean"], strict=True)]
            print(f"{'Distretto / lean':26s}" + "".join(f"{fmt(v, '', 2):>16s}" for v in ratios), file=out)
        keys = [f"tput_{k}" for k in args.per_tx] + ["p50_ms", "p99_ms"]
        figures[backend] = {
            p: {**dict(zip(keys, vals, strict=True)), "rate_reached": reached[p]} for p, vals in rows.items()
        }
        if ratios:
            figures[backend]["distretto_over_lean"] = dict(zip(keys, ratios, strict=True))
        if backend != "-":
            cpu_table(results, args, backend, out, figures[backend])
    print(
        "(throughput ratio: higher is better for Distretto; latency ratio: lower is better; rate reached: the\n"
        f" producer's pace in the latency run — below {args.rate} ev/s it was saturated, and its own backlog\n"
        " is not in the latency, which starts at each commit)",
        file=out,
    )
    return figures


def cpu_table(
    results: list[Result], args: argparse.Namespace, backend: str, out: TextIO, figures: dict[str, Any]
) -> None:
    """CPU milliseconds per 1,000 events, producer + consumer, of the throughput runs (and the ratio
    lean / Distretto: like the throughput ratio, higher is better for Distretto)."""
    pipelines = [p for p in args.pipelines if p != "raw"]
    runs = {(r.pipeline, r.per_tx): r for r in results if r.backend == backend and r.mode == "throughput" and r.cpu}
    if not runs:
        return
    print(
        f"CPU ms per 1,000 events (producer + consumer){'':4s}" + "".join(f"{f'{k} ev/tx':>16s}" for k in args.per_tx),
        file=out,
    )
    cells: dict[str, list[tuple[float | None, float | None]]] = {}
    for pipeline in pipelines:
        pairs = []
        for k in args.per_tx:
            r = runs.get((pipeline, k))
            pairs.append((r.cpu_per_1000("producer"), r.cpu_per_1000("consumer")) if r else (None, None))
        cells[pipeline] = pairs
        text = [f"{fmt(p)} + {fmt(c)}" if p is not None and c is not None else "–" for p, c in pairs]
        print(f"  {LABELS[pipeline]:46s}" + "".join(f"{t:>16s}" for t in text), file=out)
        figures.setdefault(pipeline, {})["cpu_ms_per_1000"] = {
            f"tput_{k}": {"producer": p, "consumer": c} for k, (p, c) in zip(args.per_tx, pairs, strict=True)
        }
    if "distretto" in cells and "lean" in cells:
        line = []
        for (dp, dc), (lp, lc) in zip(cells["distretto"], cells["lean"], strict=True):
            line.append(
                f"{lp / dp:.2f} / {lc / dc:.2f}" if None not in (dp, dc, lp, lc) and dp and dc else "–"  # type: ignore[operator]
            )
        print(f"  {'lean / Distretto (producer / consumer)':46s}" + "".join(f"{t:>16s}" for t in line), file=out)
    print(
        f"server CPU ms per 1,000 events (PostgreSQL + broker){'':0s}"
        + "".join(f"{f'{k} ev/tx':>14s}" for k in args.per_tx),
        file=out,
    )
    for pipeline in pipelines:
        text = []
        servers = []
        for k in args.per_tx:
            r = runs.get((pipeline, k))
            db = r.server_cpu_per_1000("postgresql") if r else None
            broker = r.server_cpu_per_1000("broker") if r else None
            servers.append({"postgresql": db, "broker": broker})
            text.append(f"{fmt(db)} + {fmt(broker)}" if db is not None and broker is not None else "–")
        print(f"  {LABELS[pipeline]:46s}" + "".join(f"{t:>16s}" for t in text), file=out)
        figures.setdefault(pipeline, {})["server_cpu_ms_per_1000"] = {
            f"tput_{k}": v for k, v in zip(args.per_tx, servers, strict=True)
        }
    print(
        "  (every process named postgres and the bench's own broker, over the whole run, warm-up included: on a\n"
        "   shared machine the PostgreSQL share counts other work on the server too — on SQLite it is others')",
        file=out,
    )


WATCHDOG = """
import os, signal, sys, time
parent, marker, pids = int(sys.argv[1]), sys.argv[2], [int(p) for p in sys.argv[3:]]
while os.getppid() == parent:
    time.sleep(1)
for pid in pids:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as fh:
            if marker.encode() in fh.read():
                os.kill(pid, signal.SIGKILL)
    except OSError:
        pass
time.sleep(1)
import shutil
shutil.rmtree(marker, ignore_errors=True)
"""


def guard_broker(tmp: str) -> None:
    """Should this process be killed outright (SIGKILL), a watchdog ends the throwaway broker it started
    and removes its folder.

    (Any other way out — Ctrl-C, SIGTERM, an error — stops the broker in ``session_broker``; the
    child processes die with this one by ``PR_SET_PDEATHSIG``.)
    """
    mine = []
    for proc in Path("/proc").iterdir():
        with contextlib.suppress(OSError, ValueError, IndexError):
            child = proc.name.isdigit() and int((proc / "stat").read_text().rsplit(")", 1)[1].split()[1]) == os.getpid()
            if child and tmp.encode() in (proc / "cmdline").read_bytes():
                mine.append(proc.name)
    if mine:
        subprocess.Popen([sys.executable, "-c", WATCHDOG, str(os.getpid()), tmp, *mine], start_new_session=True)


def loadavg() -> str:
    with contextlib.suppress(OSError):
        return " ".join(Path("/proc/loadavg").read_text().split()[:3])
    return "?"


def main() -> None:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("--tput-seconds", type=float, default=5.0, help="seconds each throughput run writes")
    parser.add_argument("--events", type=int, help="events per throughput run (instead of --tput-seconds)")
    parser.add_argument("--rate", type=int, default=500, help="events/s of the latency runs")
    parser.add_argument("--seconds", type=float, default=8.0, help="length of each latency run")
    parser.add_argument("--per-tx", type=int, nargs="+", default=[1, 100], help="events per transaction")
    parser.add_argument("--backends", nargs="+", choices=["postgresql", "sqlite"], default=["postgresql", "sqlite"])
    parser.add_argument("--pipelines", nargs="+", choices=PIPELINES, default=list(PIPELINES))
    parser.add_argument("--modes", nargs="+", choices=["throughput", "latency"], default=["throughput", "latency"])
    parser.add_argument("--postgres-url", help="SQLAlchemy URL (postgresql+asyncpg://…); schemas are made and dropped")
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds a throughput run may take")
    parser.add_argument("--json", action="store_true", help="print the figures as JSON on stdout (the table on stderr)")
    parser.add_argument("--profile", type=Path, help="directory for cProfile output, one file per process")
    parser.add_argument(
        "--relay-retention",
        type=float,
        help="seconds the Distretto relay keeps published rows (0: deletes each once acknowledged); "
        "default: the services' default",
    )
    args = parser.parse_args()
    out = sys.stderr if args.json else sys.stdout
    # SIGTERM/SIGHUP unwind like Ctrl-C: children stopped, schemas and topics dropped, broker stopped.
    for sig in (signal.SIGTERM, signal.SIGHUP):
        signal.signal(sig, lambda signum, _frame: sys.exit(128 + signum))
    signal.signal(signal.SIGINT, signal.default_int_handler)  # even when started with SIGINT ignored
    quiet()
    from distretto_dev.kafka_runner import session_broker

    if args.profile:
        args.profile.mkdir(parents=True, exist_ok=True)
    pg = postgres_url(args.postgres_url) if "postgresql" in args.backends else None
    if "postgresql" in args.backends and not pg:
        print("PostgreSQL not available: its rows are missing", file=out, flush=True)
        args.backends = [b for b in args.backends if b != "postgresql"]
    load_before = loadavg()
    started = time.monotonic()
    results: list[Result] = []
    with tempfile.TemporaryDirectory(prefix="distretto-bench-") as tmp, session_broker(Path(tmp)) as bootstrap:
        guard_broker(tmp)
        print(
            f"broker {bootstrap}; throughput runs write {f'{args.events} events' if args.events else f'for {args.tput_seconds:g} s'}, {KEYS} keys, {TOPIC.partitions} partitions; "
            f"latency at {args.rate} events/s for {args.seconds:g} s; {os.cpu_count()} cores; load {load_before}; "
            f"Distretto relay {relay_settings(args.relay_retention)}; Distretto unit of work: {distretto_api()}",
            file=out,
            flush=True,
        )
        # Unmeasured: the broker's first consumer group creates ``__consumer_offsets`` and its request
        # paths are compiled by the JIT; done here, that work is billed to no pipeline (it was to the
        # first measured run, Distretto's on PostgreSQL at 1 event per transaction).
        warm = one_run(
            argparse.Namespace(**{**vars(args), "events": 2000}), bootstrap, tmp, None, "-", "raw", "throughput", 10
        )
        print(
            f"  broker warmed up (unmeasured raw run: {fmt(warm.events_per_s)} ev/s, broker CPU "
            f"{fmt(warm.cpu.get('server:broker', 0) * 1000)} ms)",
            file=out,
            flush=True,
        )
        plan: list[tuple[str, str, str, int]] = []
        for backend in [*args.backends, "-"]:
            for pipeline in args.pipelines:
                if (pipeline == "raw") != (backend == "-"):
                    continue
                for mode in args.modes:
                    for per_tx in args.per_tx if mode == "throughput" else [1]:
                        plan.append((backend, pipeline, mode, per_tx))
        for backend, pipeline, mode, per_tx in plan:
            result = one_run(args, bootstrap, tmp, pg, backend, pipeline, mode, per_tx)
            results.append(result)
            what = (
                f"{fmt(result.events_per_s)} ev/s"
                if mode == "throughput"
                else f"p50 {fmt(result.pct(0.5), ' ms', 1)}, p99 {fmt(result.pct(0.99), ' ms', 1)} ({len(result.latencies)} of {result.events}; producer at {fmt(result.reached)} ev/s)"
            )
            print(f"  {backend:10s} {pipeline:9s} {mode:10s} {per_tx:3d}/tx: {what}", file=out, flush=True)
            expected = result.events + WARMUP
            if result.effects is not None and result.effects != (expected, expected):
                print(f"  !! effect rows (all, distinct) {result.effects}, expected {expected} each", file=out)
    load_after = loadavg()
    figures = table(results, args, out)
    elapsed = time.monotonic() - started
    print(f"load average before {load_before}, after {load_after}; {elapsed:.0f} s", file=out, flush=True)
    incomplete = [r for r in results if r.mode == "latency" and len(r.latencies) < r.events]
    if incomplete:
        print("(a latency row is missing events: the run did not finish within its wait)", file=out)
    if args.json:
        doc = {
            "settings": {
                "events": args.events,
                "tput_seconds": args.tput_seconds,
                "rate": args.rate,
                "seconds": args.seconds,
                "per_tx": args.per_tx,
                "cores": os.cpu_count(),
                "load_before": load_before,
                "load_after": load_after,
                "elapsed_s": round(elapsed, 1),
            },
            "figures": figures,
            "runs": [
                {
                    "pipeline": r.pipeline,
                    "backend": r.backend,
                    "mode": r.mode,
                    "per_tx": r.per_tx,
                    "events": r.events,
                    "events_per_s": r.events_per_s,
                    "measured": len(r.latencies) if r.mode == "latency" else None,
                    "p50_ms": r.pct(0.5),
                    "p99_ms": r.pct(0.99),
                    "mean_ms": statistics.fmean(r.latencies) * 1000 if r.latencies else None,
                    "rate_reached": r.reached,
                    "effect_rows": r.effects[0] if r.effects else None,
                    "distinct_effects": r.effects[1] if r.effects else None,
                }
                for r in results
            ],
        }
        print(json.dumps(doc, indent=2))


if __name__ == "__main__":
    try:
        main()
    except KeyboardInterrupt:
        print("interrupted: every child process stopped, the run's schemas and topics dropped", file=sys.stderr)
        raise SystemExit(130) from None
