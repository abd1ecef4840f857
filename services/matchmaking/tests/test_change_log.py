"""The index change log is read in commit order, whatever order its entries were appended in."""

from __future__ import annotations

import pytest
from sqlalchemy import select, text
from sqlalchemy.ext.asyncio import create_async_engine

from distretto_dev.testing import DatabaseTarget
from distretto_shared.migrations import upgrade_async
from matchmaking.app import MIGRATIONS
from matchmaking.search.store import IndexChange, log_order


@pytest.mark.parametrize("database", ["postgresql"], indirect=True)
async def test_entries_are_positioned_in_commit_order(database: DatabaseTarget) -> None:
    """Two writers overlap (SQLite has one writer at a time, so only PostgreSQL can do this): the one
    that appended first commits last, and a follower reading by position meets the other's entry first.
    Neither writer holds a lock while the other runs: the second appends and commits while the first
    is still open."""
    await upgrade_async(MIGRATIONS, database.url, database.schema)
    engine = create_async_engine(database.url, connect_args={"server_settings": {"search_path": database.schema}})
    append = text("INSERT INTO index_change (doc_key, created_at) VALUES (:key, now()) RETURNING id")
    try:
        async with engine.connect() as first, engine.connect() as second:
            await first.begin()
            first_id = (await first.execute(append, {"key": "opportunity:first"})).scalar_one()
            await second.begin()
            second_id = (await second.execute(append, {"key": "opportunity:second"})).scalar_one()
            await second.commit()
            # A follower now sees the committed entry only, at a position below any still to come.
            async with engine.connect() as follower:
                seen = (await follower.execute(select(IndexChange.doc_key, log_order(False)))).all()
            assert [key for key, _ in seen] == ["opportunity:second"]
            await first.commit()
        async with engine.connect() as follower:
            order = log_order(False)
            rows = (await follower.execute(select(IndexChange.id, IndexChange.doc_key, order).order_by(order))).all()
    finally:
        await engine.dispose()
    assert first_id < second_id  # appended first …
    assert [key for _, key, _ in rows] == ["opportunity:second", "opportunity:first"]  # … committed last
    assert rows[0][2] < rows[1][2]
    assert all(seq is not None for _, _, seq in rows)
