"""The public-event log: the projection appends to it (with the outbox row and one webhook message per
endpoint, in the consumer's transaction), the streams read it; :class:`LogTail` and :class:`Notifier`
tell waiting streams and delivery workers that it moved."""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import UTC, datetime

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select

from distretto_shared.contracts import public as pub
from distretto_shared.db import Database
from distretto_shared.outbox import add_event
from distretto_shared.waits import woken
from partners import domain
from partners.models import Partner, PublicEventRow, WebhookEndpoint, WebhookMessage

SOURCE = "/distretto/partners"
LOG_LOCK_KEY = 0x5041_5254  # "PART": serialises appends to the public-event log on PostgreSQL


def now() -> datetime:
    """The current UTC time."""
    return datetime.now(UTC)


def aware(value: datetime) -> datetime:
    """SQLite hands back naive datetimes: they are UTC."""
    return value if value.tzinfo else value.replace(tzinfo=UTC)


class Notifier:
    """Wakes every waiter (streams, delivery workers) after a commit that appended to the log."""

    def __init__(self) -> None:
        self._event = asyncio.Event()

    def notify(self) -> None:
        """Wake all current waiters."""
        self._event.set()
        self._event = asyncio.Event()

    async def wait(self, timeout: float) -> bool:
        """Wait for the next notification (True) or the timeout (False)."""
        return await woken(self._event, timeout)


class LogTail:
    """The newest position of the public-event log, watched by one task per process for all its
    streams: a stream that has read everything waits here instead of querying the database, so
    a thousand idle streams cost one small query per poll, not a thousand."""

    def __init__(self, db: Database, notifier: Notifier, poll_seconds: float) -> None:
        self.db = db
        self.notifier = notifier
        self.poll_seconds = poll_seconds
        self.last_seq = 0
        self._moved = Notifier()
        self.closing = False
        """Set when the service is asked to stop: every stream ends (its client resumes elsewhere)."""

    def close(self) -> None:
        """End the streams: the service is stopping."""
        self.closing = True
        self._moved.notify()

    async def refresh(self) -> int:
        """Read the newest position; wake the waiting streams when it moved."""
        async with self.db.read() as session:
            newest = (await session.execute(sa.select(sa.func.max(PublicEventRow.seq)))).scalar()
        if newest is not None and int(newest) > self.last_seq:
            self.last_seq = int(newest)
            self._moved.notify()
        return self.last_seq

    async def run(self) -> None:
        """Follow the log until cancelled (woken by this process's commits, polling for the others')."""
        while True:
            try:
                await self.refresh()
            except asyncio.CancelledError:
                raise
            except Exception:  # the database away for a moment: the streams wait, then go on
                pass
            await self.notifier.wait(self.poll_seconds)

    async def wait_beyond(self, position: int, timeout: float) -> bool:
        """Wait until the log has a position after ``position`` (True) or the timeout (False)."""
        if self.last_seq > position or self.closing:
            return True
        await self._moved.wait(timeout)
        return self.last_seq > position


# --- projection (called from the consumers, inside their transaction)


async def publish_public(session: AsyncSession, event: pub.PublicEvent, internal_id: str) -> PublicEventRow:
    """Append a public event: the outbox (→ ``public.*`` topic), the log (→ SSE) and one webhook
    message per endpoint that may receive it — all in the caller's transaction, with one id."""
    bind = session.get_bind()
    if bind.dialect.name == "postgresql":
        # Positions must become visible in order: a stream that saw seq 11 must never later find a 10.
        await session.execute(sa.text("SELECT pg_advisory_xact_lock(:k)"), {"k": LOG_LOCK_KEY})
    event_id = domain.public_event_id(internal_id, event.event_type)
    existing = (
        (await session.execute(select(PublicEventRow).where(PublicEventRow.event_id == event_id))).scalars().first()
    )
    if existing is not None:
        return existing
    row = add_event(session, event, source=SOURCE, event_id=event_id)
    log_row = PublicEventRow(
        event_id=event_id,
        event_type=event.event_type,
        subject=event.subject(),
        source=SOURCE,
        time=row.headers["ce_time"],
        payload=row.payload,
        created_at=now(),
    )
    session.add(log_row)
    await session.flush()
    assert log_row.seq is not None
    endpoints = (
        await session.execute(
            select(WebhookEndpoint, Partner)
            .join(Partner, col(Partner.id) == col(WebhookEndpoint.partner_id))
            .where(col(WebhookEndpoint.enabled).is_(True), col(Partner.active).is_(True))
        )
    ).all()
    stamp = now()
    for endpoint, partner in endpoints:
        if event.event_type in endpoint_types(endpoint, partner):
            session.add(
                WebhookMessage(
                    endpoint_id=endpoint.id,
                    seq=log_row.seq,
                    event_id=event_id,
                    event_type=event.event_type,
                    next_attempt_at=stamp,
                    created_at=stamp,
                )
            )
    return log_row


def endpoint_types(endpoint: WebhookEndpoint, partner: Partner) -> set[str]:
    """The types an endpoint receives: its own filter within the partner's grant."""
    granted = set(partner.event_types)
    return granted & set(endpoint.event_types) if endpoint.event_types else granted


# --- partners


# --- the log, for streams


async def read_log(db: Database, after: int, types: Sequence[str], limit: int) -> list[PublicEventRow]:
    """Up to ``limit`` public events after position ``after`` of the given types, in order."""
    return await db.read_after(PublicEventRow.seq, after, limit, col(PublicEventRow.event_type).in_(list(types)))
