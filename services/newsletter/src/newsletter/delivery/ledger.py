"""The delivery ledger as the engine sees it: claimed rows, outcomes and the group commit's statements."""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime
from typing import Any

import sqlalchemy as sa

from distretto_shared.db import Database
from newsletter.campaigns.models import Campaign
from newsletter.delivery.models import Delivery, DeliveryClaim
from newsletter.subscribers.models import Subscriber, Subscription

D = Delivery.__table__  # type: ignore[attr-defined]
SUB = Subscriber.__table__  # type: ignore[attr-defined]
SS = Subscription.__table__  # type: ignore[attr-defined]
C = Campaign.__table__  # type: ignore[attr-defined]
DC = DeliveryClaim.__table__  # type: ignore[attr-defined]

_MARK_SENT = (
    D.update()
    .where(D.c.id == sa.bindparam("_id"), D.c.claim_token == sa.bindparam("_token"))
    .values(
        status="sent",
        smtp_code=sa.bindparam("_code"),
        smtp_reply=sa.bindparam("_reply"),
        smtp_server=sa.bindparam("_server"),
        message_id=sa.bindparam("_mid"),
        sent_at=sa.bindparam("_now"),
        attempts=D.c.attempts + 1,
    )
)
_SET_STATUS = (
    D.update()
    .where(D.c.id == sa.bindparam("_id"), D.c.claim_token == sa.bindparam("_token"))
    .values(status=sa.bindparam("_status"), claim_token=None)
)

PG_MARK_SENT = sa.text(
    "UPDATE delivery SET status = 'sent', smtp_code = v.code, smtp_reply = v.reply, smtp_server = v.server,"
    " message_id = v.mid, sent_at = :now, attempts = delivery.attempts + 1"
    " FROM unnest(CAST(:ids AS integer[]), CAST(:tokens AS varchar[]), CAST(:codes AS integer[]),"
    " CAST(:replies AS varchar[]), CAST(:servers AS varchar[]), CAST(:mids AS varchar[]))"
    " AS v(id, token, code, reply, server, mid)"
    " WHERE delivery.id = v.id AND delivery.claim_token = v.token"
).bindparams(sa.bindparam("now", type_=D.c.sent_at.type))
"""The sent outcomes of one group commit in one statement on PostgreSQL: one array per column, one
plan, one round trip (an ``executemany`` is one statement execution per row)."""
PG_SET_STATUS = sa.text(
    "UPDATE delivery SET status = v.status, claim_token = NULL"
    " FROM unnest(CAST(:ids AS integer[]), CAST(:tokens AS varchar[]), CAST(:statuses AS varchar[]))"
    " AS v(id, token, status)"
    " WHERE delivery.id = v.id AND delivery.claim_token = v.token"
)

_SIMPLE_STATUS = {"released": "pending", "skipped": "skipped"}
"""What a row becomes when its message was not sent: released (paused, stopping) or skipped (unsubscribed)."""


@dataclass
class Outcome:
    """A send's result, waiting for the group commit."""

    delivery_id: int
    token: str
    kind: str
    campaign_id: str | None
    subscriber_id: str | None
    status: str
    """sent, failed, retry, skipped, released"""
    attempts: int = 0
    code: int | None = None
    reply: str | None = None
    message_id: str | None = None
    server: str | None = None
    permanent: bool = False
    done: asyncio.Future[None] | None = field(default=None, repr=False)


@dataclass
class Claimed:
    """A claimed ledger row with what rendering it needs."""

    id: int
    token: str
    kind: str
    campaign_id: str | None
    subscriber_id: str | None
    email: str | None
    payload: dict[str, Any] | None
    attempts: int
    name: str = ""
    language: str = "it"
    attributes: dict[str, Any] = field(default_factory=dict)
    eligible: bool = True


class SqliteRecorder:
    """The group commit's common case on SQLite: a plain ``sqlite3`` connection on one thread of its own.

    Through aiosqlite every statement costs several thread hand-offs (cursor, execute, fetch, close,
    commit) and SQLAlchemy's per-statement work; here one group commit is one call on that thread:
    ``BEGIN IMMEDIATE``, an ``executemany`` per kind of outcome, ``COMMIT``. The same file, the same
    PRAGMAs (WAL, ``synchronous=NORMAL``, busy timeout) as the service's pool; timestamps are written
    by SQLAlchemy's own SQLite DATETIME processor, so they compare with the rest.
    """

    SENT = (
        "UPDATE delivery SET status = 'sent', smtp_code = ?, smtp_reply = ?, smtp_server = ?, message_id = ?,"
        " sent_at = ?, attempts = attempts + 1 WHERE id = ? AND claim_token = ?"
    )
    STATUS = "UPDATE delivery SET status = ?, claim_token = NULL WHERE id = ? AND claim_token = ?"

    def __init__(self, path: str, dialect: Any) -> None:
        self.path = path
        self._executor = ThreadPoolExecutor(max_workers=1, thread_name_prefix="newsletter-sqlite")
        self._conn: sqlite3.Connection | None = None
        self._timestamp = D.c.sent_at.type.dialect_impl(dialect).bind_processor(dialect)

    @classmethod
    def for_database(cls, db: Database) -> SqliteRecorder | None:
        """A recorder for a file-backed SQLite database (``None`` otherwise)."""
        if not db.sqlite or db.schema:
            return None
        path = sa.engine.make_url(db.url).database
        if not path or path == ":memory:" or path.startswith("file:"):
            return None
        return cls(path, db.engine.dialect)

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            conn = sqlite3.connect(self.path, timeout=30, isolation_level=None, check_same_thread=False)
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("PRAGMA synchronous=NORMAL")
            conn.execute("PRAGMA busy_timeout=30000")
            conn.execute("PRAGMA foreign_keys=ON")
            self._conn = conn
        return self._conn

    def _write(self, sent: list[tuple[Any, ...]], simple: list[tuple[Any, ...]], renew: list[str], now: str) -> None:
        conn = self._connection()
        conn.execute("BEGIN IMMEDIATE")
        try:
            if sent:
                conn.executemany(self.SENT, sent)
            if simple:
                conn.executemany(self.STATUS, simple)
            if renew:
                marks = ",".join("?" * len(renew))
                conn.execute(
                    f"UPDATE delivery SET claimed_at = ? WHERE status = 'sending' AND claim_token IN ({marks})",
                    [now, *renew],
                )
            conn.execute("COMMIT")
        except BaseException:
            with contextlib.suppress(Exception):
                conn.execute("ROLLBACK")
            self._conn = None
            with contextlib.suppress(Exception):
                conn.close()
            raise

    async def write(self, sent: list[Outcome], simple: list[Outcome], renew: list[str], now: datetime) -> None:
        """Record sent and released/skipped outcomes (and renew leases) in one transaction."""
        stamp = self._timestamp(now) if self._timestamp else now.isoformat(" ")
        sent_rows = [(o.code, o.reply, o.server, o.message_id, stamp, o.delivery_id, o.token) for o in sent]
        simple_rows = [(_SIMPLE_STATUS[o.status], o.delivery_id, o.token) for o in simple]
        loop = asyncio.get_running_loop()
        await loop.run_in_executor(self._executor, self._write, sent_rows, simple_rows, renew, stamp)

    def close(self) -> None:
        """Close the connection on its thread and let the thread go."""

        def _close() -> None:
            if self._conn is not None:
                self._conn.close()
                self._conn = None

        self._executor.submit(_close)
        self._executor.shutdown(wait=False)
