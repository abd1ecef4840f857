"""The database helpers every service reads through, on SQLite and PostgreSQL; and a unit of work on
SQLite holding the write lock from its start, so a read-then-write transaction never fails with
"database is locked" because another writer committed in between (units of work are not nested:
that would wait on itself)."""

from __future__ import annotations

import asyncio
import json
import sqlite3
from pathlib import Path

import pytest
from sqlalchemy import text
from sqlmodel import col

from distretto_dev.testing import DatabaseTarget
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


def _try_to_write(path: Path) -> str:
    """What a second writer sees, without waiting: 'written' or SQLite's error."""
    conn = sqlite3.connect(path, timeout=0, isolation_level=None)
    try:
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("INSERT INTO t (v) VALUES ('other')")
        conn.execute("COMMIT")
        return "written"
    except sqlite3.OperationalError as exc:
        return str(exc)
    finally:
        conn.close()


async def test_a_unit_of_work_holds_the_write_lock_from_its_first_read(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite"
    db = Database(f"sqlite+aiosqlite:///{path}")
    try:
        async with db.transaction() as session:
            await session.execute(text("CREATE TABLE t (v TEXT)"))
        async with db.transaction() as session:
            before = (await session.execute(text("SELECT count(*) FROM t"))).scalar_one()
            # Another writer cannot slip in between this read and the write below.
            assert await asyncio.to_thread(_try_to_write, path) == "database is locked"
            await session.execute(text("INSERT INTO t (v) VALUES ('mine')"))
        assert before == 0
        async with db.read() as session:
            # A read session takes no lock: the other writer gets in beside it.
            assert (await session.execute(text("SELECT count(*) FROM t"))).scalar_one() == 1
            assert await asyncio.to_thread(_try_to_write, path) == "written"
        async with db.read() as session:
            rows = (await session.execute(text("SELECT v FROM t ORDER BY rowid"))).scalars().all()
        assert rows == ["mine", "other"]
    finally:
        await db.dispose()


async def test_a_unit_of_work_inside_another_on_the_same_database_is_refused(tmp_path: Path) -> None:
    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'db.sqlite'}")
    other = Database(f"sqlite+aiosqlite:///{tmp_path / 'other.sqlite'}")
    try:
        async with db.transaction():
            with pytest.raises(RuntimeError, match="inside another"):
                async with db.transaction():
                    pass
            async with other.transaction() as session:  # another database is fine
                await session.execute(text("SELECT 1"))
        async with db.transaction() as session:  # and after the first ended, a new one is fine
            await session.execute(text("SELECT 1"))
    finally:
        await db.dispose()
        await other.dispose()


@pytest.mark.parametrize("database", ["postgresql"], indirect=True)  # a server drops connections; a file does not
async def test_a_unit_of_work_after_the_server_dropped_its_pooled_connection_succeeds(
    database: DatabaseTarget,
) -> None:
    """No pre-ping on checkout: a connection the server closed while it sat in the pool is replaced
    when the next unit of work begins, and that unit of work runs as if nothing happened."""
    db = Database(database.url, schema=database.schema)
    admin = Database(database.url, schema=database.schema)
    try:
        for round_ in range(3):
            async with db.transaction() as session:
                pid = (await session.execute(text("SELECT pg_backend_pid()"))).scalar_one()
            async with admin.transaction() as session:  # the pooled connection is killed, as a restart would
                killed = (await session.execute(text("SELECT pg_terminate_backend(:p, 5000)"), {"p": pid})).scalar_one()
            assert killed is True
            async with db.transaction() as session:
                now_pid = (await session.execute(text("SELECT pg_backend_pid()"))).scalar_one()
                value = (await session.execute(text("SELECT CAST(:v AS integer)"), {"v": round_})).scalar_one()
            assert now_pid != pid and value == round_
    finally:
        await db.dispose()
        await admin.dispose()


async def test_on_sqlite_each_statement_of_a_unit_of_work_is_one_trip_to_the_driver_thread(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """aiosqlite runs every call in its own thread, and each call is a hand-off between the event
    loop and that thread. A unit of work costs one per statement: BEGIN IMMEDIATE, the use case's
    insert, the outbox insert, COMMIT — and none to give the connection back to the pool. What the
    statements answer (rows of a RETURNING, a rowcount, an integrity error that rolls back) is as
    with any driver."""
    import aiosqlite

    from distretto_shared.migrations import upgrade_async

    from .example import MIGRATIONS

    url = f"sqlite+aiosqlite:///{tmp_path / 'db.sqlite'}"
    await upgrade_async(MIGRATIONS, url, None)
    db = Database(url)
    trips: list[str] = []
    hand_off = aiosqlite.Connection._execute

    async def counted(self: aiosqlite.Connection, fn: object, *args: object, **kwargs: object) -> object:
        trips.append(getattr(fn, "__name__", repr(fn)))
        return await hand_off(self, fn, *args, **kwargs)

    try:
        await credit(db, "acc-1", 5, 1)  # the pool opens its connection (and sets its pragmas) here
        monkeypatch.setattr(aiosqlite.Connection, "_execute", counted)
        await credit(db, "acc-1", 7, 2)
        assert len(trips) == 4, trips  # BEGIN IMMEDIATE, INSERT ledger_entry, INSERT outbox, COMMIT

        async with db.transaction() as session:
            ids = (
                await session.execute(
                    text("INSERT INTO ledger_entry (account_id, amount, seq) VALUES ('acc-2', 1, 3) RETURNING seq")
                )
            ).scalars()
            assert list(ids) == [3]
            bump = text("UPDATE ledger_entry SET amount = amount + 1 WHERE account_id = 'acc-1'")
            changed = await session.execute(bump)
            assert changed.rowcount == 2  # type: ignore[attr-defined]
        with pytest.raises(Exception, match=r"(?i)unique"):
            async with db.transaction() as session:
                clash = text("INSERT INTO ledger_entry (id, account_id, amount, seq) VALUES (100, 'acc-3', 1, 4)")
                await session.execute(clash)
                await session.execute(clash)  # the same primary key again
        async with db.read() as session:
            rows = (await session.execute(text("SELECT account_id, amount FROM ledger_entry ORDER BY seq"))).all()
            outbox = (await session.execute(text("SELECT count(*) FROM outbox"))).scalar_one()
        # acc-3's unit of work left nothing
        assert [tuple(r) for r in rows] == [("acc-1", 6), ("acc-1", 8), ("acc-2", 1)]
        assert outbox == 2
    finally:
        await db.dispose()


async def test_on_sqlite_writers_of_one_process_queue_for_their_turn_and_give_up_like_the_busy_timeout(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A second unit of work waits while the first holds the write lock — in the event loop, not in
    SQLite's sleeping busy handler — and gives up after the busy timeout; once the first committed,
    the next one writes."""
    import distretto_shared.db as db_module

    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'db.sqlite'}")
    try:
        async with db.transaction() as session:
            await session.execute(text("CREATE TABLE t (v TEXT)"))
        monkeypatch.setattr(db_module, "SQLITE_BUSY_TIMEOUT", 0.2)
        inside, release = asyncio.Event(), asyncio.Event()

        async def first() -> None:
            async with db.transaction() as session:
                await session.execute(text("INSERT INTO t (v) VALUES ('first')"))
                inside.set()
                await release.wait()

        async def second() -> None:
            async with db.transaction() as session:
                await session.execute(text("INSERT INTO t (v) VALUES ('second')"))

        holder = asyncio.create_task(first())
        await inside.wait()
        with pytest.raises(TimeoutError, match="locked"):
            await second()
        release.set()
        await holder
        async with db.transaction() as session:
            await session.execute(text("INSERT INTO t (v) VALUES ('third')"))
        async with db.read() as session:
            rows = (await session.execute(text("SELECT v FROM t ORDER BY rowid"))).scalars().all()
        assert rows == ["first", "third"]
    finally:
        await db.dispose()
