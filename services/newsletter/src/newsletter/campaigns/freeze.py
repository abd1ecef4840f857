"""A campaign's audience, and freezing it into the delivery ledger one chunk at a time.

The start command freezes the first chunk (``Settings.freeze_chunk`` recipients, in subscriber-id
order) and records on the campaign where it stopped (``Campaign.freeze_after``); the delivery
engine freezes the next chunks while the frozen rows waiting to be sent fall below one chunk, so
the first mail leaves as soon as the first chunk is frozen, whatever the audience's size. Each
chunk is one ``INSERT … SELECT`` (``ON CONFLICT DO NOTHING``: one row per recipient, whoever
freezes), written with the cursor's advance in one transaction under the campaign's row lock.
A campaign finishes only once its cursor is exhausted and every ledger row is done.

Who is in the audience: the people who were on one of the campaign's lists when it started
(their subscription recorded before its start), and who, when their chunk is frozen, are still
confirmed on one of its lists, not suppressed, with one of its interests and in one of its
segments (the segments' rules as they are then). Someone who unsubscribes after the start is
therefore not mailed, whether their chunk was frozen already (the engine checks again when it
claims the row) or not yet; someone who joins after the start waits for the next campaign.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import sqlalchemy as sa
from sqlalchemy.dialects import postgresql, sqlite
from sqlalchemy.ext.asyncio import AsyncSession

from newsletter import segments
from newsletter.campaigns.models import Campaign
from newsletter.delivery.models import Delivery
from newsletter.subscribers.models import Subscriber, SubscriberInterest, Subscription
from newsletter.tables import utcnow

S = Subscriber.__table__  # type: ignore[attr-defined]
SS = Subscription.__table__  # type: ignore[attr-defined]
SI = SubscriberInterest.__table__  # type: ignore[attr-defined]
D = Delivery.__table__  # type: ignore[attr-defined]

START = ""
"""The cursor of a campaign none of whose audience is frozen yet (every subscriber id sorts after it)."""


async def audience(session: AsyncSession, c: Campaign, *, joined_by: datetime | None = None) -> sa.Select[Any]:
    """The ids of the subscribers a campaign goes to: confirmed on one of its lists, not suppressed,
    with one of its interests (when it names any), in its segments (when it names any; segments
    carry the consent rule). The one selection behind both the freeze and the count before the start.
    ``joined_by``: only subscriptions recorded by then (the campaign's start)."""
    on_list = sa.exists().where(SS.c.subscriber_id == S.c.id, SS.c.list_id.in_(c.lists), SS.c.status == "confirmed")
    if joined_by is not None:
        on_list = on_list.where(SS.c.created_at <= joined_by)
    selection = sa.select(S.c.id).where(S.c.suppressed.is_(False), on_list)
    if c.interests:
        selection = selection.where(sa.exists().where(SI.c.subscriber_id == S.c.id, SI.c.interest.in_(c.interests)))
    if c.segments:
        selection = selection.where(await segments.audience_filter(session, list(c.segments)))
    return selection


async def freeze_next(session: AsyncSession, c: Campaign, size: int) -> int:
    """Freeze the next ``size`` recipients of ``c`` after its cursor; the number of ledger rows added.

    The caller holds the campaign's row (``distretto_shared.db.load`` in a unit of work): the
    cursor moves in the transaction that inserts the chunk. A chunk shorter than ``size`` is the
    last: the cursor is cleared and ``recipients`` becomes the ledger's count.
    """
    after = c.freeze_after
    if after is None:
        return 0
    size = max(1, size)
    selection = (await audience(session, c, joined_by=c.started_at)).where(S.c.id > after)
    chunk = selection.order_by(S.c.id).limit(size).subquery()
    found, last = (await session.execute(sa.select(sa.func.count(), sa.func.max(chunk.c.id)))).one()
    added, now = 0, utcnow()
    if found:
        # Inserted in subscriber order, so that the ledger's ids (the order claims and outcomes go
        # in) follow the (campaign, subscriber) unique index: a group commit's new index entries
        # then sit side by side instead of all over it (unordered, PostgreSQL inserted the chunk in
        # its plan's order: half the benchmark's rows out of subscriber order). Measured on
        # PostgreSQL, 10,000 rows claimed in 500s and recorded in 22s, four alternated pairs: the
        # outcomes' server CPU 0.016-0.021 against 0.022-0.025 ms a mail (the claims' unchanged).
        rows = (
            selection.where(S.c.id <= last)
            .with_only_columns(
                sa.literal(c.id),
                S.c.id,
                sa.literal("campaign"),
                sa.literal(c.id + ":") + S.c.id,
                sa.literal("pending"),
                sa.literal(0),
                sa.literal(now, sa.DateTime(timezone=True)),
            )
            .order_by(S.c.id)
        )
        dialect = (await session.connection()).dialect.name
        insert = (postgresql.insert(D) if dialect == "postgresql" else sqlite.insert(D)).from_select(
            ["campaign_id", "subscriber_id", "kind", "dedupe_key", "status", "attempts", "created_at"], rows
        )
        result = await session.execute(insert.on_conflict_do_nothing())
        added = int(result.rowcount or 0)  # type: ignore[attr-defined]
    if found < size:
        c.freeze_after = None
        c.recipients = int(
            (await session.execute(sa.select(sa.func.count()).where(D.c.campaign_id == c.id))).scalar_one()
        )
    else:
        c.freeze_after = last
    c.updated_at = now
    return added
