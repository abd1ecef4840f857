"""Transactional outbox: events are rows written with the state change, then relayed to Kafka.

``add_event`` writes an event to the ``outbox`` table inside the caller's
transaction. :class:`OutboxRelay` publishes unpublished rows in id order with an
idempotent producer (``acks=all``) in batches, marks them published, wakes
right after a commit and also polls, so it catches up after a crash. With
several instances on one PostgreSQL database, an advisory lock keeps exactly
one relay active, so per-key order holds.

Hand-written on purpose: the relay's cycle (claim, acknowledge, commit) sends its statements to the
driver itself (asyncpg, aiosqlite), and ``add_events`` inserts with one fixed statement. At one event
per transaction the relay runs a cycle per commit, and ``bench/backbone/run.py`` showed SQLAlchemy's
statement machinery as a large share of the producer's CPU there; the lean baseline in
``bench/backbone/lean.py`` is the yardstick these paths are measured against.

One file (over 600 lines): the outbox table, ``add_event(s)`` and the relay share the row format, the
statements and the ordering rules (claim in id order, delete only what the broker acknowledged);
split apart, each piece would import the others' private helpers.
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import json
import time
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, NamedTuple

import aiosqlite
import asyncpg
from aiokafka import AIOKafkaProducer
from sqlalchemy import (
    JSON,
    BigInteger,
    Column,
    DateTime,
    Index,
    Integer,
    Text,
    any_,
    bindparam,
    delete,
    func,
    insert,
    select,
    text,
    update,
)
from sqlalchemy import event as sa_event
from sqlalchemy.dialects import postgresql
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession
from sqlalchemy.orm import Session
from sqlmodel import Field

from distretto_shared import metrics, tracing
from distretto_shared.db import _WRITE, OUTBOX_DIRTY, OUTBOX_PENDING, CoreUnitOfWork, Database, _AiosqliteConnection
from distretto_shared.events import Event, encode
from distretto_shared.kafka_security import KafkaCredentials, default_credentials
from distretto_shared.logging import correlation_id_var, get_logger, traceparent_var
from distretto_shared.tables import BackboneTable
from distretto_shared.topics import topic_name

log = get_logger(__name__)


async def _is_broken(conn: AsyncConnection) -> bool:
    """True when ``conn`` can no longer answer (its session, and any lock it held, is gone)."""
    try:
        await conn.rollback()
        await conn.execute(text("SELECT 1"))
        await conn.rollback()
        return False
    except Exception:
        return True


class OutboxMessage(BackboneTable, table=True):
    """An event waiting to be (or already) published."""

    __tablename__ = "outbox"
    # The relay reads the unpublished rows in id order.
    __table_args__ = (Index("ix_outbox_unpublished", "published_at", "id"),)

    id: int | None = Field(
        default=None,
        sa_column=Column(BigInteger().with_variant(Integer(), "sqlite"), primary_key=True, autoincrement=True),
    )
    event_id: str = Field(max_length=64, unique=True)
    topic: str = Field(max_length=200)
    key: str = Field(max_length=200)
    event_type: str = Field(max_length=200)
    headers: dict[str, str] = Field(sa_column=Column(JSON, nullable=False))
    payload: str = Field(sa_column=Column(Text, nullable=False))
    created_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    published_at: datetime | None = Field(default=None, sa_column=Column(DateTime(timezone=True)))


_PENDING = OUTBOX_PENDING
"""``info`` key: the outbox rows a unit of work added, inserted with one statement at commit."""


@dataclass(frozen=True, slots=True)
class OutboxEntry:
    """An event recorded in the outbox: its id and its encoded form, as it will be published."""

    event_id: str
    topic: str
    key: str
    event_type: str
    headers: dict[str, str]
    payload: str


def add_event(
    session: AsyncSession | CoreUnitOfWork,
    event: Event,
    *,
    source: str,
    correlation_id: str | None = None,
    event_id: str | None = None,
) -> OutboxEntry:
    """Record ``event`` in the outbox, in the caller's unit of work (a session of
    ``Database.transaction()`` or a ``CoreUnitOfWork`` of ``Database.core_transaction()``).

    The correlation id and traceparent default to those of the request or the
    event being handled, so a chain of events stays traceable. ``event_id`` (the
    CloudEvents id) defaults to a fresh UUID; a projector passes one derived from
    the event it projects, so the same input always yields the same id.

    The row is written when the unit of work commits, together with every other
    event it added, by one ``INSERT`` (no ORM instance, no ``RETURNING``); a
    rolled-back unit of work writes none.
    """
    return add_events(session, [event], source=source, correlation_id=correlation_id, event_ids=[event_id])[0]


def add_events(
    session: AsyncSession | CoreUnitOfWork,
    events: Sequence[Event],
    *,
    source: str,
    correlation_id: str | None = None,
    event_ids: Sequence[str | None] | None = None,
) -> list[OutboxEntry]:
    """Record many events at once, in order (see :func:`add_event`); ``event_ids`` pairs with ``events``."""
    ids: Sequence[str | None] = event_ids if event_ids is not None else [None] * len(events)
    if len(ids) != len(events):
        raise ValueError("event_ids must pair with events")
    cid = correlation_id or correlation_id_var.get()
    traceparent = traceparent_var.get()
    now = datetime.now(UTC)
    pending: list[list[Any]] = session.info.setdefault(_PENDING, [])  # rows in ``_COLUMNS`` order
    entries = []
    for event, event_id in zip(events, ids, strict=True):
        key, headers, body = encode(
            event, source=source, event_id=event_id, correlation_id=cid, traceparent=traceparent
        )
        entry = OutboxEntry(
            event_id=headers["ce_id"],
            topic=topic_name(event.topic),
            key=key,
            event_type=event.event_type,
            headers=headers,
            payload=body.decode(),
        )
        pending.append([entry.event_id, entry.topic, key, entry.event_type, headers, entry.payload, now])
        entries.append(entry)
    if entries:
        session.info[OUTBOX_DIRTY] = True
    return entries


_COLUMNS = ("event_id", "topic", "key", "event_type", "headers", "payload", "created_at")
_INSERT = "INSERT INTO outbox (event_id, topic, key, event_type, headers, payload, created_at) VALUES ({})"
_INSERT_SQLITE = _INSERT.format(", ".join("?" * len(_COLUMNS)))
_INSERT_PG = _INSERT.format(", ".join(f"${i}" for i in range(1, len(_COLUMNS) + 1)))
_bind_processors: dict[str, tuple[tuple[int, Any], ...]] = {}

OUTBOX_CTE_PG = (
    "outboxed AS (INSERT INTO outbox (event_id, topic, key, event_type, headers, payload, created_at) "
    "SELECT e, t, k, y, CAST(h AS json), p, c FROM unnest(CAST(:outbox_event_id AS text[]), "
    "CAST(:outbox_topic AS text[]), CAST(:outbox_key AS text[]), CAST(:outbox_event_type AS text[]), "
    "CAST(:outbox_headers AS text[]), CAST(:outbox_payload AS text[]), "
    "CAST(:outbox_created_at AS timestamptz[])) WITH ORDINALITY AS v(e, t, k, y, h, p, c, n) ORDER BY n)"
)
"""PostgreSQL: a data-modifying ``WITH`` (named ``outboxed``) inserting the rows of
:func:`take_pending_pg`, in the order they were added."""


def take_pending_pg(uow: CoreUnitOfWork) -> dict[str, Any] | None:
    """PostgreSQL: the outbox rows a Core unit of work added and has not written yet, taken out of it
    as the parameters of :data:`OUTBOX_CTE_PG`, for a statement of the caller's own to write them (one
    round trip fewer than their own ``INSERT`` at the commit); None when there are none. The caller
    runs that statement in the same unit of work: a rollback drops them with the rest, and the relay
    is woken after the commit as for rows written at it. Rows added later are written at the commit."""
    rows: list[list[Any]] | None = uow.info.get(_PENDING)
    if not rows or uow.dialect.name != "postgresql":
        return None
    del uow.info[_PENDING]
    return {
        "outbox_event_id": [r[0] for r in rows],
        "outbox_topic": [r[1] for r in rows],
        "outbox_key": [r[2] for r in rows],
        "outbox_event_type": [r[3] for r in rows],
        "outbox_headers": [json.dumps(r[4]) for r in rows],
        "outbox_payload": [r[5] for r in rows],
        "outbox_created_at": [r[6] for r in rows],
    }


def _processors(dialect: Any) -> tuple[tuple[int, Any], ...]:
    """The columns' bind processors for ``dialect`` (how SQLAlchemy itself would convert the values),
    as (position in ``_COLUMNS``, processor) for the columns that have one."""
    found = _bind_processors.get(dialect.name)
    if found is None:
        c = OutboxMessage.__table__.c  # type: ignore[attr-defined]
        procs = (c[name].type.dialect_impl(dialect).bind_processor(dialect) for name in _COLUMNS)
        found = tuple((i, p) for i, p in enumerate(procs) if p is not None)
        _bind_processors[dialect.name] = found
    return found


@sa_event.listens_for(Session, "before_commit")
def _write_pending(session: Session) -> None:
    """Insert the unit of work's outbox rows, in the order they were added, just before it commits."""
    rows = session.info.pop(_PENDING, None)
    if rows:
        _insert_rows(session.connection(), rows)


def _insert_rows(conn: Any, rows: list[list[Any]]) -> None:
    """One ``executemany`` of a fixed statement on the unit of work's connection, with the values
    converted once here as SQLAlchemy would (no statement construction, caching or compilation on
    the hot path; errors come wrapped as from any statement). ``rows`` are in ``_COLUMNS`` order."""
    name = conn.dialect.name
    if name not in ("sqlite", "postgresql"):
        rows_by_name = [dict(zip(_COLUMNS, r, strict=True)) for r in rows]
        conn.execute(insert(OutboxMessage.__table__), rows_by_name)  # type: ignore[attr-defined]
        return
    procs = _processors(conn.dialect)
    for row in rows:  # the rows are this unit of work's own, used once: converted in place
        for i, process in procs:
            row[i] = process(row[i])
    dbapi = conn.connection.dbapi_connection
    if isinstance(dbapi, _AiosqliteConnection):  # in the same trip to the driver's thread as the COMMIT
        dbapi.insert_at_commit(_INSERT_SQLITE, rows)
    else:
        conn.exec_driver_sql(_INSERT_SQLITE if name == "sqlite" else _INSERT_PG, [tuple(r) for r in rows])


@sa_event.listens_for(Session, "after_rollback")
def _drop_pending(session: Session) -> None:
    """A rolled-back unit of work publishes nothing."""
    session.info.pop(_PENDING, None)


class _Claimed(NamedTuple):
    """A claimed outbox row, as the relay sends it."""

    id: int
    topic: str
    key: str
    headers: dict[str, str]
    payload: str
    created_at: datetime


_CLAIM_SQL = "SELECT id, topic, key, headers, payload, created_at FROM outbox WHERE published_at IS NULL ORDER BY id"
_CLAIM_PG = _CLAIM_SQL + " LIMIT $1 FOR UPDATE SKIP LOCKED"
_CLAIM_SQLITE = _CLAIM_SQL + " LIMIT ?"
_DELETE_PG = "DELETE FROM outbox WHERE id = ANY($1::bigint[])"
# The pipelined relay's claims, made while it holds the relay lock (no row locks: no other relay runs)
# and while the batch before is being acknowledged — that batch's rows excluded, they are still there.
_NEXT_PG = (
    "SELECT id, topic, key, headers, payload, created_at FROM outbox"
    " WHERE published_at IS NULL AND id <> ALL($2::bigint[]) ORDER BY id LIMIT $1"
)
# SQLite: one writer at a time, and the batch being acknowledged is still in the table, so every row
# committed since has a larger id than that batch's last one.
_NEXT_SQLITE = (
    "SELECT id, topic, key, headers, payload, created_at FROM outbox"
    " WHERE published_at IS NULL AND id > ? ORDER BY id LIMIT ?"
)
_MARK_PG = "UPDATE outbox SET published_at = $2 WHERE id = ANY($1::bigint[])"


def _headers(value: Any) -> dict[str, str]:
    return json.loads(value) if isinstance(value, str | bytes) else dict(value)


class OutboxRelay:
    """Publishes outbox rows to Kafka; one active instance per database.

    One cycle claims up to ``batch_size`` unpublished rows in id order, sends them all, waits for
    the broker's acknowledgements (``acks=all``, idempotent producer) and then deletes them — or,
    with a ``retention``, marks them published and prunes rows published longer ago than that, in
    batches, at most every ``prune_interval`` seconds. The active relay pipelines its cycles: a
    batch's rows are deleted while the broker acknowledges the next batch (:meth:`_pipeline`),
    and the next batch is sent only once the one before was acknowledged whole. It runs on the
    connection that holds the relay's advisory lock on PostgreSQL, one statement per step (the lock
    keeps every other relay of the database away, so no row locks); on SQLite the rows are read
    without a lock and deleted by a short write transaction, so the database's write lock is never
    held while waiting for the broker. :meth:`publish_pending` (a caller without the lock) claims
    ``FOR UPDATE SKIP LOCKED`` in one transaction instead. Commits wake the relay; wake-ups arriving
    while a cycle runs make one more cycle, not one each. A relay woken from idle runs its cycle at
    once; after a cycle that sent rows it lingers (:meth:`_linger`, 8 ms or 64 commits), so rows
    that keep coming share the next cycle.
    """

    def __init__(
        self,
        db: Database,
        *,
        service: str,
        bootstrap_servers: str,
        credentials: KafkaCredentials | None = None,
        batch_size: int = 500,
        poll_interval: float = 1.0,
        lock_dir: Path | None = None,
        linger: float = 0.008,
        linger_commits: int = 64,
        retention: float = 0.0,
        prune_interval: float = 30.0,
        prune_batch: int = 1000,
        backoff_max: float = 2.0,
        standby_interval: float = 1.0,
        wait_for_topics: bool = False,
    ) -> None:
        self.db = db
        self.topics_ready = asyncio.Event()
        """Set once the service's topics exist. A relay told to wait for them publishes nothing before:
        a send to a topic not created yet only waits for metadata until its timeout."""
        if not wait_for_topics:
            self.topics_ready.set()
        self.backoff_max = backoff_max
        """Longest pause between two failed publishes: a broker back from a restart is used within it."""
        self.standby_interval = standby_interval
        """How often a relay standing by tries the lock again (the active one's instance may be gone)."""
        self.service = service
        self.bootstrap_servers = bootstrap_servers
        self.credentials = credentials or default_credentials()
        self.batch_size = batch_size
        self.poll_interval = poll_interval
        self.lock_dir = lock_dir
        self.linger = linger
        """Longest wait of a committed row for the cycle that sends it, while rows keep coming (see
        :meth:`_linger`); a relay woken from idle does not linger."""
        self.linger_commits = linger_commits
        """Commits that end the linger early: enough rows wait to fill a produce request well."""
        self.retention = retention
        """Seconds a published row is kept (for audit); 0 deletes it once the broker acknowledged it."""
        self.prune_interval = prune_interval
        self.prune_batch = prune_batch
        self._next_prune = 0.0
        self._built: tuple[Any, Any] | None = None
        self._sent_ns = 0
        self._done: Sequence[_Claimed] = ()
        """The pipelined relay's last batch: acknowledged by the broker, deleted (or marked) next cycle."""
        self._wake = asyncio.Event()
        self._enough = asyncio.Event()
        """Set once ``linger_commits`` commits came since the last claim (or on stop): ends the linger."""
        self._commits = 0
        """Commits notified since the last claim."""
        self._task: asyncio.Task[None] | None = None
        self._producer: AIOKafkaProducer | None = None
        self._stopping = False
        self._standing_by = False
        self.active = False
        """True while this instance holds the relay lock."""
        self.last_loop = 0.0
        self.last_error: str | None = None
        self._unhook: Any = None
        db.on_outbox_commit(self.notify)
        metrics.zero(metrics.OUTBOX_PUBLISH_ERRORS, [service])
        metrics.zero(metrics.OUTBOX_PUBLISHED, [service])

    def notify(self) -> None:
        """Wake the relay (called after a commit that wrote outbox rows)."""
        self._commits += 1
        if self._commits >= self.linger_commits:
            self._enough.set()
        self._wake.set()

    @property
    def running(self) -> bool:
        """True while the relay task is alive."""
        return self._task is not None and not self._task.done()

    async def start(self) -> None:
        """Start the relay task."""
        self._stopping = False
        self._task = asyncio.create_task(self._run(), name=f"outbox-relay-{self.service}")
        if self._unhook is None:
            # The backlog is counted when /metrics is read (an index range), never per batch.
            self._unhook = metrics.on_scrape(self.refresh_backlog)

    async def refresh_backlog(self) -> None:
        """Set the backlog gauges from the outbox table itself (called when ``/metrics`` is read)."""
        c = OutboxMessage.__table__.c  # type: ignore[attr-defined]
        async with self.db.read() as session:
            count = (
                await session.execute(select(func.count()).select_from(OutboxMessage).where(c.published_at.is_(None)))
            ).scalar_one()
            oldest = (
                await session.execute(select(c.created_at).where(c.published_at.is_(None)).order_by(c.id).limit(1))
            ).scalar()
        age = 0.0
        if oldest is not None:
            oldest = oldest if oldest.tzinfo else oldest.replace(tzinfo=UTC)
            age = max(0.0, (datetime.now(UTC) - oldest).total_seconds())
        metrics.OUTBOX_BACKLOG.labels(self.service).set(count)
        metrics.OUTBOX_OLDEST_AGE.labels(self.service).set(age)

    async def stop(self) -> None:
        """Stop the relay, letting an in-flight batch finish."""
        self._stopping = True
        self._wake.set()
        self._enough.set()
        if self._unhook is not None:
            self._unhook()
            self._unhook = None
        if self._task:
            try:
                await asyncio.wait_for(self._task, timeout=15)
            except (TimeoutError, asyncio.CancelledError):
                self._task.cancel()
                with contextlib.suppress(BaseException):
                    await self._task
        self._task = None

    async def _ensure_producer(self) -> AIOKafkaProducer:
        if self._producer is None:
            producer = AIOKafkaProducer(
                bootstrap_servers=self.bootstrap_servers,
                enable_idempotence=True,
                acks="all",
                # The relay appends a whole batch before it awaits anything: a linger would only
                # delay the one produce request the batch makes.
                linger_ms=0,
                max_batch_size=256 * 1024,
                request_timeout_ms=15000,
                **self.credentials.aiokafka(),
            )
            await producer.start()
            self._producer = producer
        return self._producer

    async def _close_producer(self) -> None:
        if self._producer is not None:
            with contextlib.suppress(Exception):
                await self._producer.stop()
            self._producer = None

    async def _run(self) -> None:
        try:
            while not self._stopping:
                lost = False
                async with self._leadership() as conn:
                    if self._stopping:
                        break
                    self.active = True
                    self._standing_by = False
                    log.info("outbox relay active", service=self.service)
                    try:
                        lost = await self._lead(conn)
                        if not lost:
                            await self._drain(conn)
                    finally:
                        self.active = False
                if not lost:
                    break
                # The lock's connection failed: the lock is gone with it. Take it again (another
                # instance may have it now) after a pause.
                await self._sleep(1.0)
        finally:
            self.active = False
            await self._close_producer()

    async def _lead(self, conn: AsyncConnection | None) -> bool:
        """Relay while holding the lock; True if the lock's connection was lost."""
        backoff = 0.2
        while not self._stopping and not self.topics_ready.is_set():
            self.last_loop = time.monotonic()
            await self._sleep(self.poll_interval)  # woken by stop() and by notify()
        while not self._stopping:
            self.last_loop = time.monotonic()
            # Commits from here on are taken by this cycle's claim or counted for the next linger.
            self._commits = 0
            self._enough.clear()
            try:
                published = await self._cycle(conn, pipelined=True)
                self.last_error = None
                backoff = 0.2
            except Exception as exc:  # broker or database away: retry with backoff
                self.last_error = repr(exc)
                self._done = ()  # not deleted: sent again (consumers' inboxes absorb the repeats)
                metrics.OUTBOX_PUBLISH_ERRORS.labels(self.service).inc()
                log.warning("outbox publish failed; retrying", error=repr(exc), backoff=backoff)
                await self._close_producer()
                if conn is not None and (conn.closed or conn.invalidated or await _is_broken(conn)):
                    return True
                await self._sleep(backoff)
                backoff = min(backoff * 2, self.backoff_max)
                continue
            if published >= self.batch_size:
                continue  # more may be waiting
            if self._done:
                # The batch just sent is deleted by the next cycle, which also takes what was
                # committed meanwhile: after the linger, not only after a wake-up.
                await self._linger()
                self._wake.clear()
                continue
            await self._sleep(self.poll_interval)
        return False

    async def _linger(self) -> None:
        """After a cycle that sent rows: wait ``linger``, or until ``linger_commits`` commits came since
        its claim, whichever is first (stop ends it too).

        Rows that keep coming are then sent together: each cycle (a claim, a produce request, a
        delete; on PostgreSQL a commit) carries more of them when use cases commit one event each,
        and the consumer gets them in fewer batches. A relay woken from idle does not linger (see
        :meth:`_sleep`), so a lone commit is sent at once; the linger only delays rows that arrive
        while the relay is busy, by at most ``linger`` after the cycle before theirs.
        """
        if not self._enough.is_set():
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.linger):
                    await self._enough.wait()

    async def _drain(self, conn: AsyncConnection | None, timeout: float = 5.0) -> None:
        """On a graceful stop, publish what is still waiting (bounded; the next start does the rest)."""
        if not self.topics_ready.is_set():
            return  # stopped before its topics were there: the next start publishes it
        try:
            async with asyncio.timeout(timeout):
                while await self._cycle(conn, pipelined=True):
                    pass
        except Exception as exc:
            log.info("outbox not drained at stop; the next start publishes it", error=repr(exc))

    async def _sleep(self, seconds: float) -> None:
        """Wait until woken (a commit, a stop) or ``seconds``; no linger after a wake-up. Commits
        that arrived while a cycle ran have set the wake-up already: the next cycle takes them all."""
        # asyncio.timeout, not wait_for: on Python 3.11 wait_for swallows a cancellation that comes in
        # the loop turn the event is set (a stop right after a commit would not stop the relay).
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):
                await self._wake.wait()
        self._wake.clear()

    async def publish_pending(self) -> int:
        """Publish one batch of unpublished rows in id order; returns how many were published.

        For a caller that does not hold the relay lock (a one-off drain): takes its own connection.
        """
        if self.db.sqlite:
            return await self._cycle(None)
        async with self.db.engine.connect() as conn:
            return await self._cycle(conn)

    def _statements(self) -> tuple[Any, Any]:
        """The cycle's claim and acknowledgement, built once (their cache keys too): (claim, done)."""
        if self._built is None:
            table = OutboxMessage.__table__  # type: ignore[attr-defined]  # Core, not ORM: a hot path
            c = table.c
            claim = (
                select(c.id, c.topic, c.key, c.headers, c.payload, c.created_at)
                .where(c.published_at.is_(None))
                .order_by(c.id)
                .limit(self.batch_size)
            )
            # PostgreSQL: one array parameter, so the statement text (and its prepared plan) is the
            # same whatever the batch's size.
            these = (
                c.id.in_(bindparam("ids", expanding=True))
                if self.db.sqlite
                else c.id == any_(bindparam("ids", type_=postgresql.ARRAY(BigInteger())))
            )
            done = (
                update(table).where(these).values(published_at=bindparam("published"))
                if self.retention > 0
                else delete(table).where(these)
            )
            self._built = (claim if self.db.sqlite else claim.with_for_update(skip_locked=True), done)
        return self._built

    async def _cycle(self, conn: AsyncConnection | None, *, pipelined: bool = False) -> int:
        """Claim → send all → acknowledged → delete (or mark); returns how many were published.

        The statements go to the driver itself (asyncpg, aiosqlite), as a hand-written relay would
        send them: a cycle runs many times a second when every use case commits one event.
        ``pipelined`` (only by the relay holding the lock): see :meth:`_pipeline`.
        """
        now = datetime.now(UTC)
        if conn is None:  # SQLite: never hold the write lock while waiting for the broker
            async with self.db.engine.connect() as sconn:
                driver = await _driver(sconn)
                if pipelined and isinstance(driver, aiosqlite.Connection):
                    published = await self._pipeline_sqlite(sconn, driver)
                    await self._maybe_prune(sconn)
                    return published
                if not isinstance(driver, aiosqlite.Connection):
                    rows = await self._cycle_sqlalchemy_sqlite(sconn)
                else:
                    parse = self._created_at_parser(sconn)
                    fetched = await driver.execute_fetchall(_CLAIM_SQLITE, (self.batch_size,))
                    rows = [_Claimed(r[0], r[1], r[2], _headers(r[3]), r[4], parse(r[5])) for r in fetched]
                    if rows:
                        await self._send(rows)
                        now = datetime.now(UTC)
                        ids = [row.id for row in rows]
                        marks = ", ".join("?" * len(ids))
                        if self.retention > 0:
                            stamp = self._published_value(sconn, now)
                            sql, args = f"UPDATE outbox SET published_at = ? WHERE id IN ({marks})", (stamp, *ids)
                        else:
                            sql, args = f"DELETE FROM outbox WHERE id IN ({marks})", tuple(ids)
                        async with self.db.sqlite_writer():
                            # BEGIN IMMEDIATE, the acknowledgement and COMMIT in one trip to the thread.
                            await driver._execute(_acknowledge_in_thread, driver, sql, args)
                await self._maybe_prune(sconn)
        else:
            driver = await _driver(conn)
            if pipelined and isinstance(driver, asyncpg.Connection) and not conn.in_transaction():
                published = await self._pipeline_pg(driver)
                await self._maybe_prune(conn)
                return published
            if isinstance(driver, asyncpg.Connection) and not conn.in_transaction():
                async with driver.transaction():
                    fetched = await driver.fetch(_CLAIM_PG, self.batch_size)
                    rows = [_Claimed(r[0], r[1], r[2], _headers(r[3]), r[4], r[5]) for r in fetched]
                    if rows:
                        # The idempotent producer keeps per-partition order across its own retries;
                        # if any send fails, the transaction rolls back, nothing of this batch is
                        # removed and the batch is sent again (consumers' inboxes absorb the repeats).
                        await self._send(rows)
                        now = datetime.now(UTC)
                        ids = [row.id for row in rows]
                        if self.retention > 0:
                            await driver.execute(_MARK_PG, ids, now)
                        else:
                            await driver.execute(_DELETE_PG, ids)
            else:
                claim, done = self._statements()
                async with conn.begin():
                    rows = list((await conn.execute(claim)).all())
                    if rows:
                        await self._send(rows)
                        now = datetime.now(UTC)
                        await conn.execute(done, {"ids": [row.id for row in rows], "published": now})
            await self._maybe_prune(conn)
        if rows:
            self._observe(rows, now)
        return len(rows)

    async def _pipeline(
        self,
        claim: Callable[[Sequence[_Claimed]], Awaitable[list[_Claimed]]],
        acknowledge: Callable[[Sequence[_Claimed]], Awaitable[None]],
    ) -> int:
        """One pipelined cycle: claim → send → delete (or mark) the batch before → acknowledged.

        The batch the broker acknowledged last cycle is still in the table: this cycle's claim skips
        it, and it is deleted while the broker acknowledges this cycle's batch, so the database's
        acknowledgement is off the relay's path. A batch is sent only once the one before was
        acknowledged whole, so a key's events reach the broker in id order even when a send fails
        (the failed batch stays in the table and is sent again). Returns how many rows were sent;
        the next cycle comes right after (see :meth:`_lead`) and deletes them.
        """
        done, self._done = self._done, ()
        rows = await claim(done)
        if not rows:
            if done:
                await acknowledge(done)
            return 0
        acks = await self._enqueue(rows)
        try:
            if done:
                await acknowledge(done)
            await acks
        except BaseException:
            acks.cancel()
            with contextlib.suppress(BaseException):
                await acks
            raise
        self._observe(rows, datetime.now(UTC))
        self._done = rows
        return len(rows)

    async def _pipeline_pg(self, driver: asyncpg.Connection) -> int:
        """:meth:`_pipeline` on the connection holding the relay's advisory lock, one statement each."""

        async def claim(sent: Sequence[_Claimed]) -> list[_Claimed]:
            fetched = await driver.fetch(_NEXT_PG, self.batch_size, [row.id for row in sent])
            return [_Claimed(r[0], r[1], r[2], _headers(r[3]), r[4], r[5]) for r in fetched]

        async def acknowledge(rows: Sequence[_Claimed]) -> None:
            ids = [row.id for row in rows]
            if self.retention > 0:
                await driver.execute(_MARK_PG, ids, datetime.now(UTC))
            else:
                await driver.execute(_DELETE_PG, ids)

        return await self._pipeline(claim, acknowledge)

    async def _pipeline_sqlite(self, sconn: AsyncConnection, driver: aiosqlite.Connection) -> int:
        """:meth:`_pipeline` on SQLite: reads without a lock, each acknowledgement a short write transaction."""
        parse = self._created_at_parser(sconn)

        async def claim(sent: Sequence[_Claimed]) -> list[_Claimed]:
            after = sent[-1].id if sent else 0
            fetched = await driver.execute_fetchall(_NEXT_SQLITE, (after, self.batch_size))
            return [_Claimed(r[0], r[1], r[2], _headers(r[3]), r[4], parse(r[5])) for r in fetched]

        async def acknowledge(rows: Sequence[_Claimed]) -> None:
            ids = [row.id for row in rows]
            marks = ", ".join("?" * len(ids))
            if self.retention > 0:
                stamp = self._published_value(sconn, datetime.now(UTC))
                sql, args = f"UPDATE outbox SET published_at = ? WHERE id IN ({marks})", (stamp, *ids)
            else:
                sql, args = f"DELETE FROM outbox WHERE id IN ({marks})", tuple(ids)
            async with self.db.sqlite_writer():
                # BEGIN IMMEDIATE, the acknowledgement and COMMIT in one trip to the thread.
                await driver._execute(_acknowledge_in_thread, driver, sql, args)

        return await self._pipeline(claim, acknowledge)

    async def _cycle_sqlalchemy_sqlite(self, sconn: AsyncConnection) -> list[Any]:
        """The SQLite cycle through SQLAlchemy (a driver other than aiosqlite)."""
        claim, done = self._statements()
        rows = list((await sconn.execute(claim)).all())
        await sconn.rollback()
        if rows:
            await self._send(rows)
            async with self.db.sqlite_writer():
                sconn = await sconn.execution_options(**{_WRITE: True})
                await sconn.execute(done, {"ids": [row.id for row in rows], "published": datetime.now(UTC)})
                await sconn.commit()
        return rows

    def _created_at_parser(self, conn: AsyncConnection) -> Any:
        """SQLite stores the timestamp as text: read it back as SQLAlchemy does (an aware UTC datetime)."""
        column = OutboxMessage.__table__.c.created_at  # type: ignore[attr-defined]
        process = column.type.dialect_impl(conn.dialect).result_processor(conn.dialect, None)

        def parse(value: Any) -> datetime:
            when = process(value) if process is not None else value
            return when if when.tzinfo else when.replace(tzinfo=UTC)

        return parse

    def _published_value(self, conn: AsyncConnection, now: datetime) -> Any:
        column = OutboxMessage.__table__.c.published_at  # type: ignore[attr-defined]
        process = column.type.dialect_impl(conn.dialect).bind_processor(conn.dialect)
        return process(now) if process is not None else now

    async def _send(self, rows: Sequence[Any]) -> None:
        await (await self._enqueue(rows))

    async def _enqueue(self, rows: Sequence[Any]) -> asyncio.Future[Any]:
        """Hand ``rows`` to the producer, in order; returns what completes once the broker acknowledged them all."""
        producer = await self._ensure_producer()
        self._sent_ns = time.time_ns()
        futures = []
        for row in rows:
            headers = [(k, v.encode()) for k, v in row.headers.items()]
            futures.append(
                await producer.send(row.topic, value=row.payload.encode(), key=row.key.encode(), headers=headers)
            )
        return asyncio.gather(*futures)

    async def _maybe_prune(self, conn: AsyncConnection) -> None:
        """With a retention: delete rows published before it, a batch at a time, now and then."""
        if self.retention <= 0 or time.monotonic() < self._next_prune:
            return
        self._next_prune = time.monotonic() + self.prune_interval
        table = OutboxMessage.__table__  # type: ignore[attr-defined]
        c = table.c
        cutoff = datetime.now(UTC) - timedelta(seconds=self.retention)
        for _ in range(10):  # bounded: the next prune goes on
            old = select(c.id).where(c.published_at < cutoff).order_by(c.published_at, c.id).limit(self.prune_batch)
            async with self.db.sqlite_writer():
                if self.db.sqlite:
                    conn = await conn.execution_options(**{_WRITE: True})
                result = await conn.execute(delete(table).where(c.id.in_(old.scalar_subquery())))
                await conn.commit()
            if (result.rowcount or 0) < self.prune_batch:
                return

    def _observe(self, rows: Sequence[Any], now: datetime) -> None:
        latency = metrics.OUTBOX_PUBLISH_LATENCY.labels(self.service)
        for row in rows:
            created = row.created_at if row.created_at.tzinfo else row.created_at.replace(tzinfo=UTC)
            latency.observe((now - created).total_seconds())
        metrics.OUTBOX_PUBLISHED.labels(self.service).inc(len(rows))
        if tracing.state.enabled:
            for row in rows:
                tracing.record(
                    f"publish {row.topic}",
                    tracing.PRODUCER,
                    row.headers.get("traceparent"),
                    self._sent_ns,
                    **{
                        "messaging.system": "kafka",
                        "messaging.destination.name": row.topic,
                        "distretto.service": self.service,
                    },
                )

    @contextlib.asynccontextmanager
    async def _leadership(self) -> AsyncIterator[AsyncConnection | None]:
        """Hold the relay lock; yields the connection the relay works on (``None`` on SQLite).

        PostgreSQL: a session-level advisory lock on a dedicated connection — the same one every
        cycle runs on, so losing the connection (and with it the lock) stops this relay's cycles.
        SQLite: an exclusive file lock beside the database file.
        """
        if self.db.sqlite:
            async with self._file_lock():
                yield None
            return
        # Advisory locks are database-wide: the schema is part of the key, or two deployments of a
        # service in two schemas of one database (two test workers) would hold each other's relay.
        key = zlib.crc32(f"distretto-outbox-{self.service}-{self.db.schema or ''}".encode()) & 0x7FFFFFFF
        while not self._stopping:
            try:
                conn: AsyncConnection = await self.db.engine.connect()
            except Exception as exc:
                self.last_error = repr(exc)
                await self._sleep(1.0)
                continue
            try:
                got = (await conn.execute(text("SELECT pg_try_advisory_lock(:k)"), {"k": key})).scalar()
                await conn.commit()
                if got:
                    try:
                        yield conn
                    finally:
                        with contextlib.suppress(Exception):
                            await conn.rollback()
                            await conn.execute(text("SELECT pg_advisory_unlock(:k)"), {"k": key})
                            await conn.commit()
                    return
            except Exception as exc:
                self.last_error = repr(exc)
            finally:
                with contextlib.suppress(Exception):
                    await conn.close()
            if not self._standing_by:
                log.info("another relay holds the outbox lock; standing by", service=self.service)
            self._standing_by = True
            self.last_loop = time.monotonic()
            await self._sleep(self.standby_interval)
        yield None

    @contextlib.asynccontextmanager
    async def _file_lock(self) -> Any:
        if self.lock_dir is None:
            yield
            return
        self.lock_dir.mkdir(parents=True, exist_ok=True)
        path = self.lock_dir / f"{self.service}.relay.lock"
        fh = path.open("w")
        try:
            while not self._stopping:
                try:
                    fcntl.flock(fh, fcntl.LOCK_EX | fcntl.LOCK_NB)
                    break
                except BlockingIOError:
                    self.last_loop = time.monotonic()
                    await self._sleep(2.0)
            yield
        finally:
            with contextlib.suppress(Exception):
                fcntl.flock(fh, fcntl.LOCK_UN)
            fh.close()


def _acknowledge_in_thread(driver: Any, sql: str, args: tuple[Any, ...]) -> None:
    """In aiosqlite's thread: the relay's short write transaction (rolled back if it fails)."""
    conn = driver._conn
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.execute(sql, args)
        conn.commit()
    except BaseException:
        conn.rollback()
        raise


async def _driver(conn: AsyncConnection) -> Any:
    """The driver's own connection under ``conn`` (asyncpg's or aiosqlite's)."""
    raw = await conn.get_raw_connection()
    dbapi = raw.dbapi_connection
    return getattr(dbapi, "_connection", None)
