"""The ledger's partial indexes (migration 0012): a database with rows upgrades, and what the indexes
guarantee still holds after it — a transactional mail's key is unique, a campaign mails a subscriber
once — while on PostgreSQL only the rows still to send stay in the status index.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

import pytest
import sqlalchemy as sa
from sqlalchemy.exc import IntegrityError

from distretto_dev.testing import DatabaseTarget
from distretto_shared.db import Database
from distretto_shared.migrations import upgrade_async
from newsletter.app import MIGRATIONS
from newsletter.delivery.models import Delivery

D = Delivery.__table__  # type: ignore[attr-defined]


def row(key: str, status: str, campaign_id: str | None = None, subscriber_id: str | None = None) -> dict[str, Any]:
    return {
        "campaign_id": campaign_id,
        "subscriber_id": subscriber_id,
        "kind": "campaign" if campaign_id else "welcome",
        "dedupe_key": key,
        "status": status,
        "attempts": 0,
        "created_at": datetime.now(UTC),
    }


async def test_an_existing_ledger_upgrades_and_keeps_its_guarantees(database: DatabaseTarget) -> None:
    await upgrade_async(MIGRATIONS, database.url, database.schema, to="0011")
    db = Database(database.url, schema=database.schema)
    try:
        before = [
            row("c1:s1", "sent", "c1", "s1"),
            row("c1:s2", "pending", "c1", "s2"),
            row("c1:s3", "sending", "c1", "s3"),
            row("welcome:o1:k1", "sent"),
            row("welcome:o1:k2", "pending"),
        ]
        async with db.transaction() as session:
            await session.execute(D.insert(), before)
        await upgrade_async(MIGRATIONS, database.url, database.schema)

        async with db.read() as session:
            kept = (await session.execute(sa.select(D.c.dedupe_key, D.c.status).order_by(D.c.id))).all()
        assert [tuple(r) for r in kept] == [(r["dedupe_key"], r["status"]) for r in before]

        # a transactional mail's key stays unique
        with pytest.raises(IntegrityError):
            async with db.transaction() as session:
                await session.execute(D.insert(), [row("welcome:o1:k1", "pending")])
        # a campaign still mails a subscriber once
        with pytest.raises(IntegrityError):
            async with db.transaction() as session:
                await session.execute(D.insert(), [row("other", "pending", "c1", "s1")])

        # campaign rows are out of the key's index; on PostgreSQL, finished rows out of the status index
        async with db.read() as session:
            if database.backend == "sqlite":
                found = "SELECT name, sql FROM sqlite_master WHERE type = 'index' AND tbl_name = 'delivery'"
            else:
                found = "SELECT indexname, indexdef FROM pg_indexes WHERE schemaname = current_schema()"
            definitions = {name: sql for name, sql in (await session.execute(sa.text(found))).all()}
        key = " ".join(definitions["uq_delivery_dedupe_key"].split()).lower()
        assert "unique" in key and "where" in key and "campaign_id is null" in key
        status = " ".join(definitions["ix_delivery_status_campaign"].split()).lower()
        if database.backend == "postgresql":
            assert "where" in status and "'pending'" in status and "'sending'" in status and "'sent'" not in status
    finally:
        await db.dispose()
