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
from sqlalchemy import func, select, text
from sqlalchemy.exc import IntegrityError
from sqlmodel import col

from distretto_dev.testing import DatabaseTarget
from distretto_shared.db import Database, instance_of
from distretto_shared.outbox import OUTBOX_CTE_PG, OutboxMessage, add_event, add_events, take_pending_pg

from .example import AccountCredited, credit, entries


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


async def test_a_core_read_sees_what_was_committed_and_commits_nothing(db: Database) -> None:
    for seq in range(3):
        await credit(db, "acc-r", 10, seq)
    by_account = select(entries.c.amount).where(entries.c.account_id == "acc-r").order_by(entries.c.seq)

    async with db.core_read() as conn:
        assert list((await conn.execute(by_account)).scalars()) == [10, 10, 10]
        await conn.execute(entries.insert().values(account_id="acc-r", amount=99, seq=3))  # never committed

    async with db.read() as session:
        assert list((await session.execute(by_account)).scalars()) == [10, 10, 10]
    async with db.transaction() as session:  # the connection went back to the pool holding no lock
        await session.execute(entries.insert().values(account_id="acc-r", amount=5, seq=4))
    async with db.core_read() as conn:
        assert list((await conn.execute(by_account)).scalars()) == [10, 10, 10, 5]


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
        # BEGIN IMMEDIATE with the INSERT into ledger_entry; the outbox INSERT with the COMMIT.
        assert trips == ["_in_thread", "_commit_in_thread"], trips
        trips.clear()
        async with db.core_transaction() as uow:  # the Core unit of work: the same two trips
            await uow.execute(entries.insert(), [{"account_id": "acc-0", "amount": 0, "seq": 0}])
            add_event(uow, AccountCredited(account_id="acc-0", amount=0, seq=0), source="/tests")
        assert trips == ["_in_thread", "_commit_in_thread"], trips
        async with db.core_transaction() as uow:  # nothing done: nothing sent
            pass
        assert len(trips) == 2, trips

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
        assert [tuple(r) for r in rows] == [("acc-0", 0), ("acc-1", 6), ("acc-1", 8), ("acc-2", 1)]
        assert outbox == 3
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


# -- the Core unit of work (``Database.core_transaction``) ------------------------------------


async def _outbox_seqs(db: Database) -> list[int]:
    async with db.read() as session:
        payloads = (await session.execute(select(OutboxMessage.payload).order_by(OutboxMessage.id))).scalars()  # type: ignore[arg-type]
        return [json.loads(p)["seq"] for p in payloads]


async def _ledger_seqs(db: Database) -> list[int]:
    async with db.read() as session:
        return list((await session.execute(select(entries.c.seq).order_by(entries.c.seq))).scalars())


async def test_a_core_unit_of_work_commits_rows_and_events_together_wakes_the_relay_and_rolls_back_whole(
    db: Database,
) -> None:
    woken: list[int] = []
    db.on_outbox_commit(lambda: woken.append(1))
    after: list[str] = []
    async with db.core_transaction() as uow:
        await uow.execute(entries.insert(), [{"account_id": "acc-1", "amount": 1, "seq": s} for s in range(3)])
        entries_out = add_events(
            uow, [AccountCredited(account_id="acc-1", amount=1, seq=s) for s in range(3)], source="/tests"
        )
        uow.after_commit(lambda: after.append("committed"))
        assert await uow.scalar(select(func.count()).select_from(entries)) == 3  # its own writes, visible
        assert woken == [] and after == []  # nothing before the commit
    assert woken == [1] and after == ["committed"]  # the relay woken once, after the commit
    assert await _outbox_seqs(db) == [0, 1, 2] and await _ledger_seqs(db) == [0, 1, 2]

    # An error in the use case: neither its rows nor its events stay, nobody is woken.
    with pytest.raises(ValueError, match="refused"):
        async with db.core_transaction() as uow:
            await uow.execute(entries.insert(), [{"account_id": "acc-2", "amount": 1, "seq": 9}])
            add_event(uow, AccountCredited(account_id="acc-2", amount=1, seq=9), source="/tests")
            uow.after_commit(lambda: after.append("never"))
            raise ValueError("use case refused")
    # A failing commit (an event id already in the outbox): the whole unit of work is rolled back.
    with pytest.raises(IntegrityError):
        async with db.core_transaction() as uow:
            await uow.execute(entries.insert(), [{"account_id": "acc-3", "amount": 1, "seq": 10}])
            add_event(uow, AccountCredited(account_id="acc-3", amount=1, seq=10), source="/tests")
            add_event(
                uow,
                AccountCredited(account_id="acc-3", amount=1, seq=11),
                source="/tests",
                event_id=entries_out[0].event_id,
            )
    assert woken == [1] and after == ["committed"]
    assert await _outbox_seqs(db) == [0, 1, 2] and await _ledger_seqs(db) == [0, 1, 2]

    # The connection went back to the pool clean: the next unit of work works.
    async with db.core_transaction() as uow:
        add_event(uow, AccountCredited(account_id="acc-4", amount=1, seq=12), source="/tests")
        db.request_scrub(uow)
    assert await _outbox_seqs(db) == [0, 1, 2, 12] and woken == [1, 1]
    assert db.scrub_due.is_set()  # an erasure's commit starts the scrub job


async def test_a_statement_of_the_callers_own_writes_a_core_unit_of_works_events_on_postgresql(
    db: Database,
) -> None:
    """``take_pending_pg``: the events added so far are written by the caller's statement (with its own
    write: one round trip), in order and as the commit writes them; those added later at the commit; a
    rollback drops them; the relay is woken once, after the commit. SQLite: nothing is taken (its rows
    travel with the COMMIT anyway)."""
    woken: list[int] = []
    db.on_outbox_commit(lambda: woken.append(1))
    async with db.core_transaction() as uow:
        add_events(uow, [AccountCredited(account_id="acc-1", amount=1, seq=s) for s in range(2)], source="/tests")
        taken = take_pending_pg(uow)
        if db.sqlite:
            assert taken is None
        else:
            assert taken is not None and len(taken["outbox_event_id"]) == 2
            await uow.execute(text(f"WITH {OUTBOX_CTE_PG} SELECT 1"), taken)
            assert take_pending_pg(uow) is None  # taken once
            assert woken == []
        add_event(uow, AccountCredited(account_id="acc-1", amount=1, seq=2), source="/tests")
    assert woken == [1] and await _outbox_seqs(db) == [0, 1, 2]
    async with db.read() as session:
        stored = (await session.execute(select(OutboxMessage.headers).order_by(OutboxMessage.id))).scalars().all()  # type: ignore[arg-type]
    assert [h["ce_type"] for h in stored] == [AccountCredited.event_type] * 3  # JSON either way
    assert stored[0].keys() == stored[2].keys()

    with pytest.raises(ValueError, match="refused"):
        async with db.core_transaction() as uow:
            add_event(uow, AccountCredited(account_id="acc-2", amount=1, seq=9), source="/tests")
            taken = take_pending_pg(uow)
            if taken is not None:
                await uow.execute(text(f"WITH {OUTBOX_CTE_PG} SELECT 1"), taken)
            raise ValueError("use case refused")
    assert woken == [1] and await _outbox_seqs(db) == [0, 1, 2]


async def test_an_instance_built_from_values_is_the_one_the_constructor_builds(db: Database) -> None:
    """``instance_of``: the same fields (defaults included) as the constructor's, assignable, dumped
    alike, and stored by a session like any new instance."""
    from datetime import UTC, datetime

    values = {"event_id": "e-1", "topic": "t", "key": "k", "event_type": "x", "headers": {"a": "1"}}
    values |= {"payload": "{}", "created_at": datetime(2026, 1, 2, tzinfo=UTC)}
    built, constructed = instance_of(OutboxMessage, values), OutboxMessage(**values)
    assert built.model_dump() == constructed.model_dump() and built.id is None and built.published_at is None
    assert values == {**values} and "id" not in values  # the caller's dict is left as it was
    built.topic = "t2"
    assert built.topic == "t2" and built.model_dump()["topic"] == "t2"
    async with db.transaction() as session:
        session.add(built)
    async with db.read() as session:
        stored = (await session.execute(select(OutboxMessage).where(OutboxMessage.event_id == "e-1"))).scalar_one()
    assert (stored.topic, stored.headers) == ("t2", {"a": "1"})
    assert stored.created_at.replace(tzinfo=None) == datetime(2026, 1, 2)  # SQLite keeps no zone


async def test_a_core_unit_of_work_inserts_rows_as_sqlalchemy_would_whatever_their_column_types(
    db: Database,
) -> None:
    # A plain insert goes to the driver on the unit of work's own path: JSON and timestamps are
    # stored as SQLAlchemy stores them (read back equal, also through SQLAlchemy's own insert), a
    # statement with values / RETURNING runs as SQLAlchemy runs it, a missing key is SQLAlchemy's error.
    from datetime import UTC, datetime

    outbox = OutboxMessage.__table__  # type: ignore[attr-defined]
    when = datetime(2026, 1, 2, 3, 4, 5, 600000, tzinfo=UTC)

    def row(n: int) -> dict[str, object]:
        return {
            "event_id": f"e{n}",
            "topic": "t",
            "key": "k",
            "event_type": "x",
            "headers": {"ce_id": f"e{n}", "n": str(n)},
            "payload": "{}",
            "created_at": when,
        }

    async with db.core_transaction() as uow:
        await uow.execute(outbox.insert(), [row(1), row(2)])  # the driver's path
        await uow.execute(outbox.insert().values(row(3)))  # SQLAlchemy's
        returned = (await uow.execute(outbox.insert().returning(outbox.c.event_id), [row(4)])).scalar_one()
        await uow.connection.execute(outbox.insert(), [row(5)])  # SQLAlchemy's, for comparison
    assert returned == "e4"
    async with db.read() as session:
        got = (await session.execute(select(outbox.c.event_id, outbox.c.headers, outbox.c.created_at))).all()
    assert sorted((e, h, c.replace(tzinfo=c.tzinfo or UTC)) for e, h, c in got) == [
        (f"e{n}", row(n)["headers"], when) for n in range(1, 6)
    ]
    with pytest.raises(Exception, match="event_type"):
        async with db.core_transaction() as uow:
            await uow.execute(outbox.insert(), [row(6), {k: v for k, v in row(7).items() if k != "event_type"}])
    assert await _outbox_seqs_count(db) == 5


async def _outbox_seqs_count(db: Database) -> int:
    async with db.read() as session:
        return int((await session.execute(select(func.count()).select_from(OutboxMessage))).scalar_one())


async def test_a_core_unit_of_work_inside_any_other_on_the_same_database_is_refused(tmp_path: Path) -> None:
    db = Database(f"sqlite+aiosqlite:///{tmp_path / 'db.sqlite'}")
    try:
        async with db.core_transaction():
            with pytest.raises(RuntimeError, match="inside another"):
                async with db.core_transaction():
                    pass
            with pytest.raises(RuntimeError, match="inside another"):
                async with db.transaction():
                    pass
        async with db.transaction():
            with pytest.raises(RuntimeError, match="inside another"):
                async with db.core_transaction():
                    pass
        async with db.core_transaction() as uow:  # after both ended, a new one is fine
            assert await uow.scalar(text("SELECT 1")) == 1
    finally:
        await db.dispose()


async def test_a_core_unit_of_work_on_sqlite_holds_the_write_lock_from_its_first_read(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite"
    db = Database(f"sqlite+aiosqlite:///{path}")
    try:
        async with db.core_transaction() as uow:
            await uow.execute(text("CREATE TABLE t (v TEXT)"))
        async with db.core_transaction() as uow:
            before = await uow.scalar(text("SELECT count(*) FROM t"))
            # BEGIN IMMEDIATE went with that read: another writer cannot slip in before the write.
            assert await asyncio.to_thread(_try_to_write, path) == "database is locked"
            await uow.execute(text("INSERT INTO t (v) VALUES ('mine')"))
        assert before == 0
        assert await asyncio.to_thread(_try_to_write, path) == "written"  # released at the commit
        with pytest.raises(ValueError):
            async with db.core_transaction() as uow:
                await uow.execute(text("INSERT INTO t (v) VALUES ('rolled back')"))
                raise ValueError
        assert await asyncio.to_thread(_try_to_write, path) == "written"  # released at the rollback
        async with db.read() as session:
            rows = (await session.execute(text("SELECT v FROM t ORDER BY rowid"))).scalars().all()
        assert rows == ["mine", "other", "other"]
    finally:
        await db.dispose()


async def test_on_sqlite_core_units_of_work_take_turns_on_one_kept_connection_given_up_after_a_failure(
    tmp_path: Path,
) -> None:
    """SQLite has one writer at a time: the process's Core units of work write in turn on one
    connection, checked out of the pool once, holding no lock between them. One that fails gives it
    up (rolled back, back to the pool) and the next takes a fresh one; ``dispose`` gives it back."""
    from sqlalchemy import event

    path = tmp_path / "db.sqlite"
    db = Database(f"sqlite+aiosqlite:///{path}")
    pool = db.engine.sync_engine.pool
    checkouts: list[int] = []
    checkins: list[int] = []
    event.listen(pool, "checkout", lambda dbapi, _record, _proxy: checkouts.append(id(dbapi)))
    event.listen(pool, "checkin", lambda dbapi, _record: checkins.append(id(dbapi)))
    try:
        async with db.core_transaction() as uow:
            await uow.execute(text("CREATE TABLE t (id INTEGER PRIMARY KEY, v TEXT)"))
        for n in (1, 11, 21):  # each followed by another writer's row (the next id)
            async with db.core_transaction() as uow:
                await uow.execute(text("INSERT INTO t (id, v) VALUES (:n, 'mine')"), {"n": n})
            assert await asyncio.to_thread(_try_to_write, path) == "written"  # no lock kept between them
        assert len(checkouts) == 1 and checkins == []  # one checkout for the four, still out

        with pytest.raises(IntegrityError):
            async with db.core_transaction() as uow:
                await uow.execute(text("INSERT INTO t (id, v) VALUES (30, 'rolled back')"))
                await uow.execute(text("INSERT INTO t (id, v) VALUES (1, 'again')"))  # the same key again
        assert checkins == checkouts  # given back after the failure
        async with db.core_transaction() as uow:
            await uow.execute(text("INSERT INTO t (id, v) VALUES (40, 'mine')"))
        assert len(checkouts) == 2  # a fresh one after the failure, kept again
        async with db.read() as session:
            rows = (await session.execute(text("SELECT id, v FROM t ORDER BY id"))).all()
        assert [tuple(r) for r in rows] == [
            (1, "mine"),
            (2, "other"),
            (11, "mine"),
            (12, "other"),
            (21, "mine"),
            (22, "other"),
            (40, "mine"),
        ]
    finally:
        await db.dispose()
    assert sorted(checkins) == sorted(checkouts)  # every connection back in the pool before it closed


async def test_on_sqlite_a_unit_of_work_whose_first_read_is_streamed_holds_the_write_lock_too(tmp_path: Path) -> None:
    path = tmp_path / "db.sqlite"
    db = Database(f"sqlite+aiosqlite:///{path}")
    try:
        async with db.transaction() as session:
            await session.execute(text("CREATE TABLE t (v TEXT)"))
        async with db.transaction() as session:
            streamed = await session.stream(text("SELECT count(*) FROM t"))
            assert [tuple(r) async for r in streamed] == [(0,)]
            assert await asyncio.to_thread(_try_to_write, path) == "database is locked"
            await session.execute(text("INSERT INTO t (v) VALUES ('mine')"))
        assert await asyncio.to_thread(_try_to_write, path) == "written"
    finally:
        await db.dispose()


@pytest.mark.parametrize("database", ["postgresql"], indirect=True)
async def test_a_core_unit_of_work_after_the_server_dropped_its_pooled_connection_succeeds(
    database: DatabaseTarget,
) -> None:
    db = Database(database.url, schema=database.schema)
    admin = Database(database.url, schema=database.schema)
    try:
        for round_ in range(3):
            async with db.core_transaction() as uow:
                pid = await uow.scalar(text("SELECT pg_backend_pid()"))
            async with admin.core_transaction() as uow:  # the pooled connection is killed, as a restart would
                assert await uow.scalar(text("SELECT pg_terminate_backend(:p, 5000)"), {"p": pid}) is True
            async with db.core_transaction() as uow:
                now_pid = await uow.scalar(text("SELECT pg_backend_pid()"))
                value = await uow.scalar(text("SELECT CAST(:v AS integer)"), {"v": round_})
            assert now_pid != pid and value == round_
    finally:
        await db.dispose()
        await admin.dispose()
