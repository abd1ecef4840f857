"""A tiny service used to exercise the backbone: a ledger of credits.

``credit`` is a use case (state change + outbox event in one transaction);
``projection`` is a consumer whose effect (one row per handled credit) lets the
tests count effects exactly.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import sqlalchemy as sa
from sqlalchemy.ext.asyncio import AsyncSession

from distretto_shared.consumer import Consumers
from distretto_shared.db import Database
from distretto_shared.events import Event, EventMeta, PermanentEventError
from distretto_shared.outbox import add_event
from distretto_shared.topics import TopicSpec

MIGRATIONS = Path(__file__).parent / "example_migrations"
SOURCE = "/distretto/example"
TOPIC = TopicSpec("example.account.v1", partitions=3)

metadata = sa.MetaData()
entries = sa.Table(
    "ledger_entry",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("account_id", sa.String(50), nullable=False),
    sa.Column("amount", sa.Integer, nullable=False),
    sa.Column("seq", sa.Integer, nullable=False),
)
effects = sa.Table(
    "credit_effect",
    metadata,
    sa.Column("id", sa.Integer, primary_key=True),
    sa.Column("event_id", sa.String(64), nullable=False),
    sa.Column("account_id", sa.String(50), nullable=False),
    sa.Column("seq", sa.Integer, nullable=False),
)


class AccountCredited(Event):
    """An account received an amount."""

    event_type = "distretto.example.account.credited.v1"
    topic = TOPIC.name
    subject_field = "account_id"

    account_id: str
    amount: int
    seq: int


class Rollback(Exception):
    """Raised by a use case to abort its unit of work."""


async def credit(db: Database, account_id: str, amount: int, seq: int, *, fail: bool = False) -> None:
    """Use case: record a credit and its event; ``fail`` aborts after both were written."""
    async with db.transaction() as session:
        await session.execute(entries.insert().values(account_id=account_id, amount=amount, seq=seq))
        add_event(session, AccountCredited(account_id=account_id, amount=amount, seq=seq), source=SOURCE)
        if fail:
            raise Rollback("aborted by the test")


class Faults:
    """Switches the tests flip to make the handler fail."""

    transient_failures = 0
    """How many more calls fail with a transient error."""
    reject_seq: int | None = None
    """A seq the handler refuses permanently."""
    delay: float = 0.0
    """Seconds each handling takes (to stop a consumer mid-stream)."""
    broken_seq: int | None = None
    """A seq whose handling fails with a transient error until this is cleared (an outage)."""


projection = Consumers("example-projection")


@projection.handles(AccountCredited)
async def on_credited(ctx: object, session: AsyncSession, event: AccountCredited, meta: EventMeta) -> None:
    if Faults.reject_seq is not None and event.seq == Faults.reject_seq:
        raise PermanentEventError(f"seq {event.seq} refused")
    if Faults.delay:
        await asyncio.sleep(Faults.delay)
    if Faults.broken_seq is not None and event.seq == Faults.broken_seq:
        raise ConnectionError("simulated database outage")
    if Faults.transient_failures > 0:
        Faults.transient_failures -= 1
        raise ConnectionError("simulated database outage")
    await session.execute(effects.insert().values(event_id=meta.id, account_id=event.account_id, seq=event.seq))


async def effect_rows(db: Database) -> list[tuple[str, str, int]]:
    """(event_id, account_id, seq) of every handled credit, in handling order."""
    async with db.read() as session:
        rows = await session.execute(
            sa.select(effects.c.event_id, effects.c.account_id, effects.c.seq).order_by(effects.c.id)
        )
        return [(r[0], r[1], r[2]) for r in rows]


class BatchCalls:
    """Sizes of the batches the batch handler was called with (failed calls included)."""

    sizes: list[int] = []
    units: list[str] = []
    """The kind of unit of work each call got (``AsyncSession`` or ``CoreUnitOfWork``)."""
    flaky_seq: int | None = None
    """A seq whose batch fails while ``flaky_left`` > 0 (a transient fault that passes)."""
    flaky_left = 0


batch_projection = Consumers("example-batch-projection")


@batch_projection.handles_batch(AccountCredited)
async def on_credited_batch(ctx: object, session: AsyncSession, batch: list[tuple[AccountCredited, EventMeta]]) -> None:
    BatchCalls.sizes.append(len(batch))
    BatchCalls.units.append(type(session).__name__)
    for event, _meta in batch:
        if Faults.reject_seq is not None and event.seq == Faults.reject_seq:
            raise PermanentEventError(f"seq {event.seq} refused")
        if BatchCalls.flaky_seq == event.seq and BatchCalls.flaky_left > 0:
            BatchCalls.flaky_left -= 1
            raise ConnectionError("simulated database outage")
    # One statement for the whole batch's effects.
    await session.execute(
        effects.insert(), [{"event_id": meta.id, "account_id": e.account_id, "seq": e.seq} for e, meta in batch]
    )


core_batch_projection = Consumers("example-core-batch-projection")
"""The same batch handler on the Core unit of work: inbox claim, effects and commit on one connection."""
core_batch_projection.handles_batch(AccountCredited, core=True)(on_credited_batch)
