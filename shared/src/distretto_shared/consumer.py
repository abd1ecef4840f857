"""Consumer runner on FastStream 0.7: inbox, retries with backoff, dead letters, lag.

A service declares its handlers on a :class:`Consumers` object::

    consumers = Consumers("membership-projection")

    @consumers.handles(OrganisationJoined)
    async def on_joined(ctx, session, event, meta): ...   # ctx: the service's Context (principal service:<name>)

:class:`ConsumerRunner` subscribes to the topics of those events with
FastStream (``AckPolicy.NACK_ON_ERROR``: the offset is committed only after the
handler returns, i.e. after its transaction committed; an exception seeks back
so the message is read again). For each message it:

1. decodes the CloudEvents headers and the body; a message that can never
   succeed (headers missing, not JSON, unknown type, fails validation) goes to
   ``<topic>.dlq`` at once;
2. opens one transaction, claims ``(consumer, source, id)`` in the inbox (a
   duplicate is skipped) and calls the handler in that transaction;
3. retries a failing handler with exponential backoff; after N attempts the
   message goes to the dead-letter topic, and the partition keeps flowing.

One file (over 600 lines): the handler declarations, the FastStream wiring, the inbox claim, retries,
dead letters and replay all act on the same batch and its offsets; split apart, the batch's state would
travel between modules.
"""

from __future__ import annotations

import asyncio
import contextlib
import traceback
from collections import Counter
from collections.abc import Awaitable, Callable, Iterable
from contextlib import AbstractAsyncContextManager
from dataclasses import dataclass
from datetime import UTC, datetime
from enum import StrEnum
from itertools import chain
from typing import Any

import structlog
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer, ConsumerRecord, TopicPartition
from aiokafka.admin import AIOKafkaAdminClient
from faststream import AckPolicy
from faststream.kafka import KafkaBroker
from faststream.kafka.subscriber.usecase import BatchSubscriber
from faststream.message import StreamMessage
from sqlalchemy.ext.asyncio import AsyncSession

from distretto_shared import inbox, metrics, tracing
from distretto_shared.db import Database
from distretto_shared.events import (
    Event,
    EventMeta,
    PermanentEventError,
    decode,
    decode_headers,
)
from distretto_shared.kafka_security import KafkaCredentials, default_credentials
from distretto_shared.logging import correlation_id_var, get_logger, traceparent_var
from distretto_shared.topics import consumer_group, dlq_topic, topic_name

log = get_logger(__name__)

Handler = Callable[[Any, AsyncSession, Any, EventMeta], Awaitable[None]]
"""``async def h(ctx, session, event, meta)``: ``ctx`` is the service's :class:`~distretto_shared.context.Context`
(principal ``service:<name>``)."""
BatchHandler = Callable[[Any, Any, list[tuple[Any, EventMeta]]], Awaitable[None]]
"""``async def h(ctx, session, batch)``: ``batch`` is ``[(event, meta), …]`` in delivery order, each
event new to this consumer; its effects are written for all of them, ideally with one statement.
``session`` is an ``AsyncSession``, or a :class:`~distretto_shared.db.CoreUnitOfWork` for a handler
registered with ``handles_batch(…, core=True)``."""

DLQ_ERROR = "dlq_error"
DLQ_ERROR_KIND = "dlq_error_kind"
DLQ_ATTEMPTS = "dlq_attempts"
DLQ_TOPIC = "dlq_origin_topic"
DLQ_PARTITION = "dlq_origin_partition"
DLQ_OFFSET = "dlq_origin_offset"
DLQ_CONSUMER = "dlq_consumer"
DLQ_TIME = "dlq_time"
DLQ_HEADERS = (DLQ_ERROR, DLQ_ERROR_KIND, DLQ_ATTEMPTS, DLQ_TOPIC, DLQ_PARTITION, DLQ_OFFSET, DLQ_CONSUMER, DLQ_TIME)
REPLAY_FOR = "dlq_replay_for"
"""On a replayed record: the one consumer group (``<service>.<consumers>``) it is for; every other group skips it."""
REPLAYED_FROM = "dlq_replayed_from"
"""On a replayed record: ``<dlq topic>@<offset>`` of the dead letter it came from."""


class Outcome(StrEnum):
    """What became of one message."""

    HANDLED = "handled"
    DUPLICATE = "duplicate"
    IGNORED = "ignored"
    DEAD_LETTERED = "dead_lettered"
    NOT_ADDRESSED = "not_addressed"
    """A replayed dead letter addressed to another consumer group."""


class Consumers:
    """A named set of event handlers (the name is the inbox's ``consumer`` and the group id's suffix)."""

    def __init__(self, name: str) -> None:
        self.name = name
        self.handlers: dict[str, Any] = {}
        """Event type → its handler (a :data:`Handler`, or a :data:`BatchHandler` for the types in ``batched``)."""
        self.batched: set[str] = set()
        self.core: set[str] = set()
        """The batch-handled types whose handler writes Core statements only (``handles_batch(core=True)``)."""
        self.topics: set[str] = set()

    def handles(self, *event_classes: type[Event]) -> Callable[[Handler], Handler]:
        """Register the decorated coroutine as the handler of these event types, one event per call."""

        def register(fn: Handler) -> Handler:
            for cls in event_classes:
                self.handlers[cls.event_type] = fn
                self.batched.discard(cls.event_type)
                self.core.discard(cls.event_type)
                self.topics.add(cls.topic)
            return fn

        return register

    def handles_batch(self, *event_classes: type[Event], core: bool = False) -> Callable[[BatchHandler], BatchHandler]:
        """Register the decorated coroutine as the batch handler of these event types.

        It is called as ``h(ctx, session, [(event, meta), …])`` with consecutive new events of these
        types from one fetched batch, in delivery order, inside the batch's transaction. If it fails,
        the batch is split and retried; an event that fails alone is retried, then dead-lettered,
        like any other (it is then called with a batch of one).

        ``core=True``: the handler writes Core statements only, so it gets a
        :class:`~distretto_shared.db.CoreUnitOfWork` instead of a session; a fetched batch whose
        events all have such handlers is claimed in the inbox, handled and committed on one
        connection (``Database.core_transaction``), without an ORM session.
        """

        def register(fn: BatchHandler) -> BatchHandler:
            for cls in event_classes:
                self.handlers[cls.event_type] = fn
                self.batched.add(cls.event_type)
                if core:
                    self.core.add(cls.event_type)
                else:
                    self.core.discard(cls.event_type)
                self.topics.add(cls.topic)
            return fn

        return register


@dataclass(frozen=True)
class Record:
    """The parts of a Kafka record the runner needs (FastStream-independent)."""

    topic: str
    partition: int
    offset: int
    key: bytes | None
    value: bytes | None
    headers: list[tuple[str, bytes]]


class _PromptBatchSubscriber(BatchSubscriber):
    """FastStream's batch subscriber without the pause after an empty fetch.

    FastStream sleeps ``batch_timeout_ms`` after a ``getmany`` that returned nothing, on top of
    the ``getmany`` that already waited that long: a record arriving meanwhile waits up to 200 ms
    more. Here the next ``getmany`` starts at once; it returns as soon as a record arrives.
    """

    __slots__ = ()

    async def get_msg(self, consumer: AIOKafkaConsumer) -> tuple[ConsumerRecord, ...]:
        messages = await consumer.getmany(timeout_ms=self.batch_timeout_ms, max_records=self.max_records)
        return tuple(chain.from_iterable(messages.values()))


def _no_sleep_after_empty_fetch(subscriber: Any) -> None:
    if type(subscriber) is BatchSubscriber:
        subscriber.__class__ = _PromptBatchSubscriber
    else:  # a FastStream upgrade changed the class: keep its behaviour, say so once
        log.warning("batch subscriber not adapted; empty fetches pause", kind=type(subscriber).__name__)


class ConsumerRunner:
    """Runs one :class:`Consumers` set against Kafka with inbox, retries and dead letters."""

    def __init__(
        self,
        consumers: Consumers,
        *,
        db: Database | None,
        service: str,
        context: Any = None,
        bootstrap_servers: str,
        credentials: KafkaCredentials | None = None,
        max_attempts: int = 5,
        backoff_initial: float = 0.2,
        backoff_max: float = 5.0,
        batch_size: int = 500,
    ) -> None:
        self.consumers = consumers
        self._db = db
        self.service = service
        self.context = context
        """What handlers receive first: the service's ``Context`` acting as itself."""
        self.bootstrap_servers = bootstrap_servers
        self.credentials = credentials or default_credentials()
        self.max_attempts = max_attempts
        self.backoff_initial = backoff_initial
        self.backoff_max = backoff_max
        self.batch_size = batch_size
        self.group_id = f"{service}.{consumers.name}"
        """The consumers' name in dead letters, replays and traces (the same in every environment)."""
        self.kafka_group = consumer_group(service, consumers.name)
        """The group on the broker (:func:`~distretto_shared.topics.consumer_group`)."""
        self._producer: AIOKafkaProducer | None = None
        self._producer_lock = asyncio.Lock()
        self._admin: AIOKafkaAdminClient | None = None
        self._offsets: AIOKafkaConsumer | None = None
        self._unhook: Callable[[], None] | None = None
        topics = sorted(topic_name(t) for t in consumers.topics)
        metrics.zero(metrics.DEAD_LETTERS, [service], [consumers.name], topics, metrics.DEAD_LETTER_KINDS)
        metrics.zero(metrics.CONSUMER_RETRIES, [service], topics)
        metrics.zero(metrics.INBOX_DUPLICATES, [service], [consumers.name])
        metrics.zero(metrics.REPLAYS_SKIPPED, [service], [consumers.name])

    @property
    def db(self) -> Database:
        """The service database (absent only when the runner is built for documentation)."""
        if self._db is None:
            raise RuntimeError("ConsumerRunner built without a database")
        return self._db

    # -- FastStream wiring -------------------------------------------------

    def attach(self, broker: KafkaBroker) -> None:
        """Subscribe to every topic the handlers need, on ``broker`` (a batch subscriber)."""
        if not self.consumers.topics:
            return
        if self._db is not None and self._unhook is None:
            self._unhook = metrics.on_scrape(self.refresh_lag, min_interval=1.0)

        async def raw_records(msg: StreamMessage[Any]) -> Any:
            # Never let FastStream decode: a broken body must reach us, not fail before us. The
            # handler gets the fetched records themselves (FastStream's context annotations would
            # be resolved in a thread pool, two thread hand-offs per batch).
            return msg.raw_message

        async def batch_message(raw: tuple[Any, ...], original: Callable[[Any], Awaitable[Any]]) -> Any:
            # FastStream's batch message, without its decoding every record's headers into a dict of
            # its own (nothing reads them: ``handle_batch`` decodes each record's headers once).
            if len(raw) <= 1:
                return await original(raw)
            msg = await original(raw[:1])
            msg.raw_message = raw  # the acknowledgement and a rewind (nack) cover the whole batch
            return msg

        subscriber = broker.subscriber(
            *sorted(topic_name(t) for t in self.consumers.topics),
            batch=True,
            max_records=self.batch_size,
            batch_timeout_ms=200,
            # Adaptive batching: the broker answers a fetch as soon as one record is there (no wait
            # at low rates), and under load the records that arrive while a batch is handled are
            # prefetched and make up the next one (up to ``max_records``).
            fetch_min_bytes=1,
            fetch_max_wait_ms=200,
            group_id=self.kafka_group,
            auto_offset_reset="earliest",
            ack_policy=AckPolicy.NACK_ON_ERROR,
            parser=batch_message,
            decoder=raw_records,
            title=f"{self.service}:{self.consumers.name}",
            description=f"Handles {', '.join(sorted(self.consumers.handlers))}",
        )

        async def entry(raw: Any) -> None:
            raws = raw if isinstance(raw, tuple) else (raw,)
            records = [
                Record(
                    topic=r.topic,
                    partition=r.partition,
                    offset=r.offset,
                    key=r.key,
                    value=r.value,
                    headers=list(r.headers or ()),
                )
                for r in raws
            ]
            try:
                await self.handle_batch(records)
            except Exception:
                # Only a failed dead-letter publish (broker away) gets here: wait, then let
                # FastStream seek back; the inbox absorbs what was already handled.
                await asyncio.sleep(1.0)
                raise

        _no_sleep_after_empty_fetch(subscriber)
        subscriber(entry)

    async def refresh_lag(self) -> None:
        """Set ``distretto_consumer_lag`` per partition: the partition's end minus the group's committed offset.

        Read from the broker (not from what this process fetched), so a stuck or stopped
        consumer shows its lag growing. Called when ``/metrics`` is read, at most once a second.
        """
        try:
            if self._admin is None:
                admin = AIOKafkaAdminClient(
                    bootstrap_servers=self.bootstrap_servers, request_timeout_ms=5000, **self.credentials.aiokafka()
                )
                await admin.start()
                self._admin = admin
            if self._offsets is None:
                offsets = AIOKafkaConsumer(
                    bootstrap_servers=self.bootstrap_servers,
                    group_id=None,
                    enable_auto_commit=False,
                    **self.credentials.aiokafka(),
                )
                await offsets.start()
                self._offsets = offsets
            tps: list[TopicPartition] = []
            for topic in sorted(topic_name(t) for t in self.consumers.topics):
                partitions = self._offsets.partitions_for_topic(topic)
                if not partitions:
                    await self._offsets._client.force_metadata_update()
                    partitions = self._offsets.partitions_for_topic(topic) or set()
                tps += [TopicPartition(topic, p) for p in sorted(partitions)]
            if not tps:
                return
            committed = await self._admin.list_consumer_group_offsets(self.kafka_group, partitions=tps)
            end = await self._offsets.end_offsets(tps)
            begin = await self._offsets.beginning_offsets(tps)
        except Exception:
            await self._close_lag_clients()
            raise
        for tp in tps:
            meta = committed.get(tp)
            position = meta.offset if meta is not None and meta.offset >= 0 else begin[tp]
            metrics.CONSUMER_LAG.labels(self.service, self.consumers.name, tp.topic, str(tp.partition)).set(
                max(0, end[tp] - position)
            )

    async def _close_lag_clients(self) -> None:
        admin, offsets, self._admin, self._offsets = self._admin, self._offsets, None, None
        if admin is not None:
            with contextlib.suppress(Exception):
                await admin.close()
        if offsets is not None:
            with contextlib.suppress(Exception):
                await offsets.stop()

    def _addressed_elsewhere(self, record: Record) -> bool:
        """A replayed dead letter meant for another consumer group."""
        for key, value in record.headers:
            if key == REPLAY_FOR:
                if value.decode(errors="replace") != self.group_id:
                    metrics.REPLAYS_SKIPPED.labels(self.service, self.consumers.name).inc()
                    return True
                return False
        return False

    async def handle_batch(self, records: list[Record]) -> list[Outcome]:
        """Process a fetched batch: one transaction for all of it, split on failure.

        The inbox claims every event with one statement, and the handlers run in the same single
        transaction (one commit per batch instead of one per event; a batch handler writes its
        effects for many events at once). If anything in it fails, it is rolled back whole and
        processed again as two halves, and so on: the records that succeed are committed once,
        and a record failing alone is retried with backoff, then dead-lettered, costing only
        itself. Handlers must therefore have database effects only.
        """
        decoded: list[tuple[Record, EventMeta, Event, Any] | None] = []
        outcomes: list[Outcome | None] = []
        for record in records:
            if self._addressed_elsewhere(record):
                decoded.append(None)
                outcomes.append(Outcome.NOT_ADDRESSED)
                continue
            try:
                meta, event = decode(decode_headers(record.headers), record.value)
            except PermanentEventError:
                decoded.append(None)
                outcomes.append(None)  # dead-lettered by the per-record path below
                continue
            handler = self.consumers.handlers.get(meta.type)
            if handler is None:
                metrics.EVENTS_IGNORED.labels(self.service, self.consumers.name, meta.type).inc()
                decoded.append(None)
                outcomes.append(Outcome.IGNORED)
                continue
            decoded.append((record, meta, event, handler))
            outcomes.append(None)

        # In partition order: runs of decoded records as batches, and each undecodable record
        # (dead-lettered by ``handle``) after the run before it, so dead letters keep the order.
        result = list(outcomes)
        run: list[int] = []
        for i, (record, item, outcome) in enumerate(zip(records, decoded, outcomes, strict=True)):
            if item is not None:
                run.append(i)
            elif outcome is None:
                await self._run_batch(run, decoded, result)
                result[i] = await self.handle(record)
        await self._run_batch(run, decoded, result)
        return [o if o is not None else Outcome.IGNORED for o in result]

    async def _run_batch(
        self, run: list[int], decoded: list[tuple[Record, EventMeta, Event, Any] | None], result: list[Outcome | None]
    ) -> None:
        """Handle the decoded records at positions ``run`` as one batch; set their outcomes; empty ``run``."""
        if not run:
            return
        work = [d for d in (decoded[i] for i in run) if d is not None]
        for i, outcome in zip(run, await self._split(work), strict=True):
            result[i] = outcome
        run.clear()

    async def _split(self, work: list[tuple[Record, EventMeta, Event, Any]]) -> list[Outcome]:
        """Handle ``work`` in one transaction; if that fails, each half the same way, down to one record."""
        if len(work) == 1:
            record, meta, event, handler = work[0]
            with self._event_context(meta):
                return [await self._attempts(record, handler, meta, event)]
        try:
            return await self._fast_path(work)
        except Exception as exc:
            log.info("batch failed; handling it in halves", size=len(work), error=repr(exc))
        mid = len(work) // 2
        return await self._split(work[:mid]) + await self._split(work[mid:])

    async def _fast_path(self, work: list[tuple[Record, EventMeta, Event, Any]]) -> list[Outcome]:
        outcomes: list[Outcome] = []
        async with self._unit_of_work(m.type for _, m, _, _ in work) as session:
            # One statement claims the batch in the inbox; a clash with a racing consumer waits
            # for it, and what it committed is not claimed again.
            fresh = await inbox.claim_many(session, consumer=self.consumers.name, metas=[m for _, m, _, _ in work])
            run: list[tuple[Event, EventMeta]] = []
            run_handler: Any = None
            for _record, meta, event, handler in work:
                if (meta.source, meta.id) not in fresh:
                    outcomes.append(Outcome.DUPLICATE)
                    continue
                fresh.discard((meta.source, meta.id))  # the same event twice in one batch: once
                outcomes.append(Outcome.HANDLED)
                if meta.type in self.consumers.batched:
                    if run and handler is not run_handler:
                        await self._call_batch(run_handler, session, run)
                        run = []
                    run_handler = handler
                    run.append((event, meta))
                    continue
                if run:
                    await self._call_batch(run_handler, session, run)
                    run = []
                with self._event_context(meta):
                    await handler(self.context, session, event, meta)
            if run:
                await self._call_batch(run_handler, session, run)
        handled: Counter[str] = Counter()
        for (_, meta, _, _), outcome in zip(work, outcomes, strict=True):
            handled[meta.type if outcome is Outcome.HANDLED else ""] += 1
        for event_type, count in handled.items():  # one update per type, not one per event
            if event_type:
                metrics.EVENTS_HANDLED.labels(self.service, self.consumers.name, event_type).inc(count)
            else:
                metrics.INBOX_DUPLICATES.labels(self.service, self.consumers.name).inc(count)
        return outcomes

    def _unit_of_work(self, types: Iterable[str]) -> AbstractAsyncContextManager[Any]:
        """A Core unit of work when every one of ``types`` has a Core batch handler, else a session."""
        core = self.consumers.core
        if core and all(t in core for t in types):
            return self.db.core_transaction()
        return self.db.transaction()

    async def _call_batch(self, handler: Any, session: Any, batch: list[tuple[Event, EventMeta]]) -> None:
        if len(batch) == 1:
            with self._event_context(batch[0][1]):
                await handler(self.context, session, batch)
            return
        with structlog.contextvars.bound_contextvars(event_type=batch[0][1].type, batch_size=len(batch)):
            await handler(self.context, session, batch)

    @contextlib.contextmanager
    def _event_context(self, meta: EventMeta) -> Any:
        """Bind the event's ids to logs, and its correlation id to events the handler emits."""
        cid_token = correlation_id_var.set(meta.correlation_id)
        tp_token = traceparent_var.set(meta.traceparent)
        try:
            with (
                structlog.contextvars.bound_contextvars(
                    event_id=meta.id, event_type=meta.type, correlation_id=meta.correlation_id
                ),
                tracing.span(
                    f"handle {meta.type}",
                    tracing.CONSUMER,
                    meta.traceparent,
                    **{
                        "messaging.system": "kafka",
                        "messaging.consumer.group.name": self.group_id,
                        "messaging.message.id": meta.id,
                        "distretto.service": self.service,
                    },
                ) as span,
            ):
                if span is not None:  # events the handler writes continue the trace from here
                    traceparent_var.set(tracing.traceparent_of(span))
                yield
        finally:
            correlation_id_var.reset(cid_token)
            traceparent_var.reset(tp_token)

    async def close(self) -> None:
        """Stop the dead-letter producer and the lag clients."""
        if self._unhook is not None:
            self._unhook()
            self._unhook = None
        await self._close_lag_clients()
        if self._producer is not None:
            with contextlib.suppress(Exception):
                await self._producer.stop()
            self._producer = None

    # -- processing --------------------------------------------------------

    async def handle(self, record: Record) -> Outcome:
        """Process one record: decode, dedupe, run the handler with retries, or dead-letter it."""
        if self._addressed_elsewhere(record):
            return Outcome.NOT_ADDRESSED
        try:
            headers = decode_headers(record.headers)
            meta, event = decode(headers, record.value)
        except PermanentEventError as exc:
            await self.dead_letter(record, exc, attempts=0, kind="invalid")
            return Outcome.DEAD_LETTERED

        handler = self.consumers.handlers.get(meta.type)
        if handler is None:
            metrics.EVENTS_IGNORED.labels(self.service, self.consumers.name, meta.type).inc()
            return Outcome.IGNORED

        with self._event_context(meta):
            return await self._attempts(record, handler, meta, event)

    async def _attempts(self, record: Record, handler: Any, meta: EventMeta, event: Event) -> Outcome:
        delay = self.backoff_initial
        for attempt in range(1, self.max_attempts + 1):
            try:
                duplicate = False
                async with self._unit_of_work((meta.type,)) as session:
                    fresh = await inbox.claim(session, consumer=self.consumers.name, meta=meta)
                    if fresh and meta.type in self.consumers.batched:
                        await handler(self.context, session, [(event, meta)])
                    elif fresh:
                        await handler(self.context, session, event, meta)
                    else:
                        duplicate = True
                if duplicate:
                    metrics.INBOX_DUPLICATES.labels(self.service, self.consumers.name).inc()
                    log.info("duplicate event skipped")
                    return Outcome.DUPLICATE
                metrics.EVENTS_HANDLED.labels(self.service, self.consumers.name, meta.type).inc()
                return Outcome.HANDLED
            except PermanentEventError as exc:
                await self.dead_letter(record, exc, attempts=attempt, kind="rejected")
                return Outcome.DEAD_LETTERED
            except Exception as exc:
                if await self._already_processed(meta):
                    # The racing delivery won the inbox's primary key: this one is a duplicate.
                    metrics.INBOX_DUPLICATES.labels(self.service, self.consumers.name).inc()
                    return Outcome.DUPLICATE
                if attempt >= self.max_attempts:
                    await self.dead_letter(record, exc, attempts=attempt, kind="failed")
                    return Outcome.DEAD_LETTERED
                metrics.CONSUMER_RETRIES.labels(self.service, record.topic).inc()
                log.warning("handler failed; retrying", attempt=attempt, error=repr(exc), backoff=delay)
                await asyncio.sleep(delay)
                delay = min(delay * 2, self.backoff_max)
        raise AssertionError("unreachable")

    async def _already_processed(self, meta: EventMeta) -> bool:
        with contextlib.suppress(Exception):
            async with self.db.read() as session:
                return await inbox.is_processed(
                    session, consumer=self.consumers.name, source=meta.source, event_id=meta.id
                )
        return False

    async def _dlq_producer(self) -> AIOKafkaProducer:
        async with self._producer_lock:
            if self._producer is None:
                producer = AIOKafkaProducer(
                    bootstrap_servers=self.bootstrap_servers,
                    acks="all",
                    enable_idempotence=True,
                    **self.credentials.aiokafka(),
                )
                await producer.start()
                self._producer = producer
            return self._producer

    async def dead_letter(self, record: Record, exc: BaseException, *, attempts: int, kind: str) -> None:
        """Publish the record unchanged to ``<topic>.dlq`` with headers naming the error and origin."""
        reason = str(exc) or type(exc).__name__
        if kind == "failed":
            reason = "".join(traceback.format_exception_only(type(exc), exc)).strip()
        extra = {
            DLQ_ERROR: reason[:4000],
            DLQ_ERROR_KIND: kind,
            DLQ_ATTEMPTS: str(attempts),
            DLQ_TOPIC: record.topic,
            DLQ_PARTITION: str(record.partition),
            DLQ_OFFSET: str(record.offset),
            DLQ_CONSUMER: self.group_id,
            DLQ_TIME: datetime.now(UTC).isoformat(),
        }
        headers = [(k, v) for k, v in record.headers if k not in extra and k != REPLAY_FOR]
        headers += [(k, v.encode()) for k, v in extra.items()]
        producer = await self._dlq_producer()
        await producer.send_and_wait(dlq_topic(record.topic), value=record.value, key=record.key, headers=headers)
        metrics.DEAD_LETTERS.labels(self.service, self.consumers.name, record.topic, kind).inc()
        log.error(
            "message dead-lettered",
            topic=record.topic,
            partition=record.partition,
            offset=record.offset,
            kind=kind,
            attempts=attempts,
            error=reason[:500],
        )
