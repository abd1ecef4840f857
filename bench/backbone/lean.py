"""The lean same-architecture baseline: outbox → Kafka → inbox, hand-written on purpose.

This module is the yardstick the Distretto backbone is measured against, so it is written by hand
with the database drivers (asyncpg, aiosqlite) and aiokafka directly — no backbone code except the
project's own CloudEvents ``encode``/``decode`` — and it must stay that way: if it used the
backbone, the benchmark would compare the backbone with itself.

It keeps every guarantee of the architecture, so the comparison is fair:

- the tables are the project's own, created by a service's Alembic migrations (``outbox``,
  ``processed_event``, the example ledger's ``ledger_entry`` and ``credit_effect``);
- two processes that share only Kafka: the producing side (use case + relay) and the consuming side;
- the use case writes its state rows and its outbox rows in one transaction (``executemany``);
- the relay claims up to 500 rows in id order (PostgreSQL: ``SELECT … FOR UPDATE SKIP LOCKED LIMIT
  500``; SQLite: a plain ordered select inside ``BEGIN IMMEDIATE``), sends them all with an
  idempotent ``acks=all`` producer, waits for every acknowledgement and deletes them, in one
  transaction on one connection; a commit of the use case wakes it, and it also polls;
- the consumer takes what ``getmany`` returns, claims the batch in the inbox with one ``INSERT … ON
  CONFLICT DO NOTHING RETURNING``, writes the effects of the claimed events with ``executemany`` in
  the same transaction, commits, and only then commits the Kafka offsets.

What it leaves out (and the benchmark does not exercise): dead letters, retries with backoff,
metrics, tracing, the relay's leadership lock, the handler context.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import time
from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

import aiosqlite
import asyncpg
from aiokafka import AIOKafkaConsumer, AIOKafkaProducer
from sqlalchemy.engine import make_url

from distretto_shared.events import Event, PermanentEventError, decode, decode_headers, encode
from distretto_shared.kafka_security import default_credentials

BATCH = 500
"""Rows the relay claims at a time, and the most inbox rows one statement claims."""
POLL = 0.5
"""Seconds the relay sleeps when no commit woke it (it catches up after a crash)."""

CLAIM_PG = "SELECT id, topic, key, headers, payload FROM outbox ORDER BY id LIMIT $1 FOR UPDATE SKIP LOCKED"
CLAIM_SQLITE = "SELECT id, topic, key, headers, payload FROM outbox ORDER BY id LIMIT ?"
INSERT_ENTRY = "INSERT INTO ledger_entry (account_id, amount, seq) VALUES ({})"
INSERT_OUTBOX = "INSERT INTO outbox (event_id, topic, key, event_type, headers, payload, created_at) VALUES ({})"
INSERT_EFFECT = "INSERT INTO credit_effect (event_id, account_id, seq) VALUES ({})"
INBOX_PG = (
    "INSERT INTO processed_event (consumer, source, event_id, event_type, processed_at) "
    "SELECT $1::text, s, i, t, $5::timestamptz FROM unnest($2::text[], $3::text[], $4::text[]) AS u(s, i, t) "
    "ON CONFLICT DO NOTHING RETURNING source, event_id"
)
INBOX_SQLITE = (
    "INSERT INTO processed_event (consumer, source, event_id, event_type, processed_at) VALUES {} "
    "ON CONFLICT DO NOTHING RETURNING source, event_id"
)


def _params(n: int, pg: bool) -> str:
    return ", ".join(f"${i + 1}" for i in range(n)) if pg else ", ".join("?" * n)


class Store:
    """One connection to a service database, PostgreSQL (asyncpg) or SQLite (aiosqlite).

    Only what the baseline needs: a write transaction, ``executemany``, ``fetch``.
    """

    def __init__(self, url: str, schema: str | None) -> None:
        self.url = make_url(url)
        self.schema = schema
        self.pg = self.url.get_backend_name() == "postgresql"
        self._pg: asyncpg.Connection | None = None
        self._lite: aiosqlite.Connection | None = None

    async def open(self) -> Store:
        if self.pg:
            ssl = self.url.query.get("ssl") or self.url.query.get("sslmode")
            settings = {"search_path": self.schema} if self.schema else {}
            self._pg = await asyncpg.connect(
                host=self.url.host,
                port=self.url.port,
                user=self.url.username,
                password=self.url.password,
                database=self.url.database,
                ssl=False if ssl in ("disable", "false") else ssl,
                server_settings=settings,
            )
        else:
            # The project's own SQLite settings (distretto_shared.db), so both sides pay the same.
            self._lite = await aiosqlite.connect(self.url.database or "", isolation_level=None, timeout=30)
            for pragma in (
                "journal_mode=WAL",
                "synchronous=NORMAL",
                "busy_timeout=30000",
                "foreign_keys=ON",
                "secure_delete=ON",
            ):
                await self._lite.execute(f"PRAGMA {pragma}")
        return self

    async def close(self) -> None:
        if self._pg is not None:
            await self._pg.close()
        if self._lite is not None:
            await self._lite.close()

    @contextlib.asynccontextmanager
    async def write(self) -> Any:
        """A write transaction (SQLite: ``BEGIN IMMEDIATE``, the write lock taken up front)."""
        if self._pg is not None:
            async with self._pg.transaction():
                yield self
            return
        assert self._lite is not None
        await self._lite.execute("BEGIN IMMEDIATE")
        try:
            yield self
        except BaseException:
            await self._lite.execute("ROLLBACK")
            raise
        await self._lite.execute("COMMIT")

    async def executemany(self, sql: str, rows: Sequence[Sequence[Any]]) -> None:
        if not rows:
            return
        if self._pg is not None:
            await self._pg.executemany(sql, rows)
        else:
            assert self._lite is not None
            await self._lite.executemany(sql, rows)

    async def fetch(self, sql: str, *args: Any) -> list[Sequence[Any]]:
        if self._pg is not None:
            return list(await self._pg.fetch(sql, *args))
        assert self._lite is not None
        async with self._lite.execute(sql, args) as cur:
            return list(await cur.fetchall())

    async def execute(self, sql: str, *args: Any) -> None:
        if self._pg is not None:
            await self._pg.execute(sql, *args)
        else:
            assert self._lite is not None
            await self._lite.execute(sql, args)

    def timestamp(self, when: datetime) -> Any:
        """A ``DateTime(timezone=True)`` value as each driver takes it."""
        return when if self.pg else when.isoformat(sep=" ")


class Producer:
    """The producing service: a use case that writes state + outbox rows, and the relay."""

    def __init__(self, url: str, schema: str | None, *, bootstrap: str, source: str, linger_ms: int = 0) -> None:
        self.use_case_db = Store(url, schema)
        self.relay_db = Store(url, schema)
        self.bootstrap = bootstrap
        self.source = source
        self.linger_ms = linger_ms
        self.kafka: AIOKafkaProducer | None = None
        self._wake = asyncio.Event()
        self._stopping = False
        self._task: asyncio.Task[None] | None = None
        self.published = 0

    async def start(self) -> None:
        await self.use_case_db.open()
        await self.relay_db.open()
        self.kafka = AIOKafkaProducer(
            bootstrap_servers=self.bootstrap,
            acks="all",
            enable_idempotence=True,
            linger_ms=self.linger_ms,
            max_batch_size=256 * 1024,
            **default_credentials().aiokafka(),
        )
        await self.kafka.start()
        self._task = asyncio.create_task(self._relay())

    async def stop(self) -> None:
        self._stopping = True
        self._wake.set()
        if self._task is not None:
            with contextlib.suppress(Exception):
                await asyncio.wait_for(self._task, 15)
        if self.kafka is not None:
            await self.kafka.stop()
        await self.use_case_db.close()
        await self.relay_db.close()

    async def use_case(self, entries: Sequence[tuple[str, int, int]], events: Sequence[Event]) -> None:
        """Write ``entries`` (account, amount, seq) and ``events`` in one transaction, then wake the relay."""
        db = self.use_case_db
        now = db.timestamp(datetime.now(UTC))
        outbox = []
        for event in events:
            key, headers, body = encode(event, source=self.source)
            outbox.append(
                (headers["ce_id"], _topic(event), key, event.event_type, json.dumps(headers), body.decode(), now)
            )
        async with db.write():
            await db.executemany(INSERT_ENTRY.format(_params(3, db.pg)), entries)
            await db.executemany(INSERT_OUTBOX.format(_params(7, db.pg)), outbox)
        self._wake.set()

    async def _relay(self) -> None:
        while not self._stopping:
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._wake.wait(), POLL)
            self._wake.clear()
            try:
                while await self.relay_once() >= BATCH:
                    pass
            except Exception:  # broker or database away: the rows stay, the next wake-up retries
                await asyncio.sleep(0.2)
        with contextlib.suppress(Exception):
            while await self.relay_once():
                pass

    async def relay_once(self) -> int:
        """Claim, send, wait for every acknowledgement, delete: one transaction on one connection."""
        db, kafka = self.relay_db, self.kafka
        assert kafka is not None
        async with db.write():
            rows = await db.fetch(CLAIM_PG if db.pg else CLAIM_SQLITE, BATCH)
            if not rows:
                return 0
            futures = []
            for _id, topic, key, headers, payload in rows:
                hdrs = [(k, v.encode()) for k, v in json.loads(headers).items()]
                futures.append(await kafka.send(topic, value=payload.encode(), key=key.encode(), headers=hdrs))
            await asyncio.gather(*futures)
            if db.pg:
                await db.execute("DELETE FROM outbox WHERE id = ANY($1::bigint[])", [r[0] for r in rows])
            else:  # the write lock is held since the claim: no row below the last one appeared
                await db.execute("DELETE FROM outbox WHERE id <= ?", rows[-1][0])
        self.published += len(rows)
        return len(rows)


def _topic(event: Event) -> str:
    from distretto_shared.topics import topic_name

    return topic_name(event.topic)


class Consumer:
    """The consuming service: ``getmany`` → inbox claim → effects → commit → offsets."""

    def __init__(
        self,
        url: str,
        schema: str | None,
        *,
        bootstrap: str,
        topics: Sequence[str],
        group: str,
        name: str,
        fetch_max_wait_ms: int = 500,
    ) -> None:
        self.db = Store(url, schema)
        self.name = name
        self.kafka = AIOKafkaConsumer(
            *topics,
            bootstrap_servers=bootstrap,
            group_id=group,
            auto_offset_reset="earliest",
            enable_auto_commit=False,
            fetch_max_wait_ms=fetch_max_wait_ms,
            **default_credentials().aiokafka(),
        )
        self.rejected = 0
        """Records that can never be handled (a real service would dead-letter them)."""

    async def start(self) -> None:
        await self.db.open()
        await self.kafka.start()

    async def stop(self) -> None:
        await self.kafka.stop()
        await self.db.close()

    async def poll(self, timeout_ms: int = 200) -> list[tuple[Any, Any]]:
        """Handle one ``getmany`` batch; returns the (event, commit time) of the events it claimed."""
        batch = await self.kafka.getmany(timeout_ms=timeout_ms)
        decoded = []
        for records in batch.values():
            for record in records:
                try:
                    meta, event = decode(decode_headers(record.headers), record.value)
                except PermanentEventError:
                    self.rejected += 1
                    continue
                decoded.append((meta, event))
        if not batch:
            return []
        handled: list[Any] = []
        db = self.db
        now = db.timestamp(datetime.now(UTC))
        async with db.write():
            for start in range(0, len(decoded), BATCH):
                chunk = decoded[start : start + BATCH]
                if db.pg:
                    claimed = await db.fetch(
                        INBOX_PG,
                        self.name,
                        [m.source for m, _ in chunk],
                        [m.id for m, _ in chunk],
                        [m.type for m, _ in chunk],
                        now,
                    )
                else:
                    values = ", ".join(["(?, ?, ?, ?, ?)"] * len(chunk))
                    args = [v for m, _ in chunk for v in (self.name, m.source, m.id, m.type, now)]
                    claimed = await db.fetch(INBOX_SQLITE.format(values), *args)
                fresh = {(r[0], r[1]) for r in claimed}
                effects = []
                for meta, event in chunk:
                    if (meta.source, meta.id) in fresh:
                        fresh.discard((meta.source, meta.id))  # a repeat inside the batch: one effect
                        effects.append((meta.id, event.key, event.seq))
                        handled.append(event)
                await db.executemany(INSERT_EFFECT.format(_params(3, db.pg)), effects)
        committed = time.time()
        await self.kafka.commit()
        return [(event, committed) for event in handled]
