"""The database helpers every service reads through, on SQLite and PostgreSQL."""

from __future__ import annotations

import json

from sqlmodel import col

from distretto_shared.db import Database
from distretto_shared.outbox import OutboxMessage

from .example import credit


async def test_read_after_gives_the_next_batch_past_a_position_in_order_and_filtered(db: Database) -> None:
    for seq in range(8):
        await credit(db, f"acc-{seq % 2}", 1, seq)
    of_acc_0 = col(OutboxMessage.key) == "acc-0"

    first = await db.read_after(OutboxMessage.id, 0, 3, of_acc_0)
    assert [json.loads(r.payload)["seq"] for r in first] == [0, 2, 4]
    rest = await db.read_after(OutboxMessage.id, first[-1].id, 3, of_acc_0)
    assert [json.loads(r.payload)["seq"] for r in rest] == [6]  # nothing at or before the position again
    assert await db.read_after(OutboxMessage.id, rest[-1].id, 3, of_acc_0) == []

    everything = await db.read_after(OutboxMessage.id, 0, 100)
    ids = [r.id for r in everything]
    assert len(ids) == 8 and ids == sorted(ids)
