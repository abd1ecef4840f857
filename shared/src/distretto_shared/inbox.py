"""Inbox: ``(consumer, source, id)`` recorded with a handler's effects, so a redelivery has no second effect."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import Column, DateTime, Text, bindparam, insert, select, text
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import Field, col

from distretto_shared.db import CoreUnitOfWork
from distretto_shared.events import EventMeta
from distretto_shared.tables import BackboneTable


class ProcessedEvent(BackboneTable, table=True):
    """An event a consumer has handled."""

    __tablename__ = "processed_event"

    consumer: str = Field(primary_key=True, max_length=100)
    source: str = Field(primary_key=True, max_length=200)
    event_id: str = Field(primary_key=True, max_length=64)
    event_type: str = Field(max_length=200)
    processed_at: datetime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))


def _dialect(session: AsyncSession | CoreUnitOfWork) -> Any:
    return session.dialect if isinstance(session, CoreUnitOfWork) else session.get_bind().dialect


async def is_processed(session: AsyncSession | CoreUnitOfWork, *, consumer: str, source: str, event_id: str) -> bool:
    """True when this consumer has already handled the event."""
    row = (
        await session.execute(
            select(col(ProcessedEvent.event_id)).where(
                col(ProcessedEvent.consumer) == consumer,
                col(ProcessedEvent.source) == source,
                col(ProcessedEvent.event_id) == event_id,
            )
        )
    ).first()
    return row is not None


async def claim(session: AsyncSession | CoreUnitOfWork, *, consumer: str, meta: EventMeta) -> bool:
    """Record the event as processed in this transaction; False if it already was."""
    return bool(await claim_many(session, consumer=consumer, metas=[meta]))


async def claim_many(
    session: AsyncSession | CoreUnitOfWork, *, consumer: str, metas: list[EventMeta]
) -> set[tuple[str, str]]:
    """Record these events as processed in this transaction; returns the ``(source, id)`` pairs that
    were not yet — the ones to handle now.

    One statement, ``INSERT … ON CONFLICT DO NOTHING RETURNING`` (PostgreSQL and SQLite alike). Two
    racing deliveries cannot both win: the second insert waits for the first transaction and, once
    it committed, claims nothing; if it rolled back, the second claims the event.
    """
    if not metas:
        return set()
    now = datetime.now(UTC)
    rows: dict[tuple[str, str], EventMeta] = {}
    for m in metas:
        rows.setdefault((m.source, m.id), m)
    dialect = _dialect(session).name
    if dialect == "postgresql":
        # Arrays, not a VALUES list: the statement's text (and its prepared plan) is the same
        # whatever the batch's size.
        claimed = await session.execute(
            _CLAIM_PG,
            {
                "consumer": consumer,
                "sources": [m.source for m in rows.values()],
                "ids": [m.id for m in rows.values()],
                "types": [m.type for m in rows.values()],
                "now": now,
            },
        )
        return {(r[0], r[1]) for r in claimed}
    if dialect == "sqlite":
        # One statement per up to 500 events, its text written here (SQLAlchemy's insertmany of
        # parameter dicts with RETURNING cost several µs per event): the same guarantees.
        stamp = _timestamp(_dialect(session))(now)
        wanted = list(rows.values())
        fresh: set[tuple[str, str]] = set()
        for start in range(0, len(wanted), _SQLITE_ROWS):
            chunk = wanted[start : start + _SQLITE_ROWS]
            sql = _CLAIM_SQLITE.format(", ".join(["(?, ?, ?, ?, ?)"] * len(chunk)))
            params = tuple(v for m in chunk for v in (consumer, m.source, m.id, m.type, stamp))
            if isinstance(session, CoreUnitOfWork):
                result: Any = await session.exec_driver_sql(sql, params)
            else:
                result = await (await session.connection()).exec_driver_sql(sql, params)
            fresh.update((r[0], r[1]) for r in result)
        return fresh
    table = ProcessedEvent.__table__  # type: ignore[attr-defined]
    stmt = sqlite.insert(table).on_conflict_do_nothing().returning(table.c.source, table.c.event_id)
    claimed = await session.execute(
        stmt,
        [
            {"consumer": consumer, "source": m.source, "event_id": m.id, "event_type": m.type, "processed_at": now}
            for m in rows.values()
        ],
    )
    return {(r[0], r[1]) for r in claimed}


_SQLITE_ROWS = 500
_CLAIM_SQLITE = (
    "INSERT INTO processed_event (consumer, source, event_id, event_type, processed_at) VALUES {} "
    "ON CONFLICT DO NOTHING RETURNING source, event_id"
)
_timestamps: dict[str, Any] = {}


def _timestamp(dialect: Any) -> Any:
    """``processed_at`` as the dialect stores it (SQLite: SQLAlchemy's text form), converted as SQLAlchemy would."""
    found = _timestamps.get(dialect.name)
    if found is None:
        column = ProcessedEvent.__table__.c.processed_at  # type: ignore[attr-defined]
        process = column.type.dialect_impl(dialect).bind_processor(dialect)
        found = process if process is not None else (lambda value: value)
        _timestamps[dialect.name] = found
    return found


_CLAIM_PG = text(
    "INSERT INTO processed_event (consumer, source, event_id, event_type, processed_at) "
    "SELECT CAST(:consumer AS TEXT), u.s, u.i, u.t, CAST(:now AS TIMESTAMPTZ) "
    "FROM unnest(CAST(:sources AS TEXT[]), CAST(:ids AS TEXT[]), CAST(:types AS TEXT[])) AS u(s, i, t) "
    "ON CONFLICT DO NOTHING RETURNING source, event_id"
).bindparams(
    bindparam("consumer", type_=Text()),
    bindparam("sources", type_=postgresql.ARRAY(Text())),
    bindparam("ids", type_=postgresql.ARRAY(Text())),
    bindparam("types", type_=postgresql.ARRAY(Text())),
    bindparam("now", type_=DateTime(timezone=True)),
)


async def processed_among(
    session: AsyncSession | CoreUnitOfWork, *, consumer: str, event_ids: list[str]
) -> set[tuple[str, str]]:
    """The (source, id) pairs among ``event_ids`` this consumer has already handled."""
    if not event_ids:
        return set()
    rows: Any = await session.execute(
        select(col(ProcessedEvent.source), col(ProcessedEvent.event_id)).where(
            col(ProcessedEvent.consumer) == consumer, col(ProcessedEvent.event_id).in_(event_ids)
        )
    )
    return {(r[0], r[1]) for r in rows}


async def record_many(session: AsyncSession | CoreUnitOfWork, *, consumer: str, metas: list[EventMeta]) -> None:
    """Insert the inbox rows of events known not to be processed yet, in one statement."""
    if not metas:
        return
    now = datetime.now(UTC)
    await session.execute(
        insert(ProcessedEvent),
        [
            {"consumer": consumer, "source": m.source, "event_id": m.id, "event_type": m.type, "processed_at": now}
            for m in metas
        ],
    )
