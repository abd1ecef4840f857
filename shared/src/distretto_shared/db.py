"""Database access: one async engine per service, one transaction per unit of work.

SQLite (aiosqlite) is the embedded default, PostgreSQL (asyncpg) is used by URL.
Use cases write in a unit of work: ``Database.transaction()`` (an ORM session) or
``Database.core_transaction()`` (the same contract on one connection, for Core statements only);
either commits once at the end and, when it added outbox rows, wakes the outbox relay.

Hand-written on purpose, below SQLAlchemy: on SQLite each statement runs in one trip to
aiosqlite's thread (``_OneTripCursor``, built on aiosqlite's internal ``_execute``; aiosqlite is
pinned in the lock file), a unit of work's ``BEGIN IMMEDIATE`` travels with its first statement and
its outbox rows with its COMMIT. SQLAlchemy's own adaptation makes three or four thread trips per
statement; ``bench/backbone/run.py`` at one event per transaction showed the use case's process
saturated on them. One state row plus one event, CPU of the event loop's thread per unit of work
(three alternating rounds): 0.87–1.04 ms with SQLAlchemy's adaptation, 0.60–0.74 ms with one trip per
statement, 0.69–0.74 ms (session) and 0.55–0.60 ms (Core) with two trips per unit of work, measured
on a busier machine. A Core unit of work's plain ``table.insert()`` goes to the driver as its
compiled text with the columns' own bind processors (``CoreUnitOfWork.execute``), without
SQLAlchemy's per-execution statement machinery (event loop's thread CPU per unit of work, state row
+ event, medians of 15 interleaved blocks, three runs on a loaded machine: SQLite 674 / 665 / 555 µs
→ 574 / 614 / 532, PostgreSQL 1,245 / 1,064 / 1,059 → 1,137 / 995 / 908).

``instance_of`` builds a table class's instance from values without its constructor (46 µs for an
opportunity of 20 fields, 3 µs without: matchmaking's write at 32 clients in ``bench/services``).

One file (over 600 lines): the engine's set-up, both units of work and the SQLite driver adaptation
they run on share the connection-level details (the one-trip cursor, the deferred BEGIN, the outbox
rows sent with the COMMIT); apart, each would reach into the others' internals.
"""

from __future__ import annotations

import asyncio
import collections
import contextlib
import contextvars
import sqlite3
from collections.abc import AsyncIterator, Callable, Iterable, Iterator, Sequence
from contextlib import asynccontextmanager
from threading import Thread
from typing import Any, TypeVar

import aiosqlite
from sqlalchemy import ColumnElement, event, func, select, text
from sqlalchemy import inspect as sa_inspect
from sqlalchemy.dialects.sqlite.aiosqlite import (
    AsyncAdapt_aiosqlite_connection,
    AsyncAdapt_aiosqlite_cursor,
    AsyncAdapt_aiosqlite_dbapi,
)
from sqlalchemy.engine import CursorResult, make_url
from sqlalchemy.exc import DBAPIError, DisconnectionError, OperationalError
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncEngine, AsyncSession, async_sessionmaker, create_async_engine
from sqlalchemy.sql.dml import Insert
from sqlalchemy.util import EMPTY_DICT
from sqlalchemy.util.concurrency import await_

from distretto_shared.logging import get_logger

log = get_logger(__name__)

OUTBOX_DIRTY = "distretto_outbox_dirty"
OUTBOX_PENDING = "distretto_outbox_pending"
"""``info`` key of a unit of work: the outbox rows it added, inserted with one statement at commit."""
SCRUB_DUE = "distretto_scrub_due"
UNIT_OF_WORK = "distretto_unit_of_work"
"""``session.info`` key set in a unit of work (:meth:`Database.transaction`): :func:`load` locks there."""
_WRITE = "distretto_write"
"""Execution option of a unit of work's connection: on SQLite it begins with ``BEGIN IMMEDIATE``."""

SQLITE_BUSY_TIMEOUT = 30.0
"""Seconds a SQLite writer waits for the database's write lock before giving up."""

_open_write: contextvars.ContextVar[dict[int, bool] | None] = contextvars.ContextVar(
    "distretto_open_write", default=None
)


def is_sqlite(url: str) -> bool:
    """True when the URL names a SQLite database."""
    return make_url(url).get_backend_name() == "sqlite"


def contains_text(column: Any, needle: str) -> ColumnElement[bool]:
    """``column`` holds ``needle``, case-insensitively, with ``%``, ``_`` and ``\\`` in it taken literally.

    A portable ``LIKE`` (SQLite and PostgreSQL) for the search boxes of list endpoints.
    """
    escaped = needle.strip().lower().replace("\\", "\\\\").replace("%", "\\%").replace("_", "\\_")
    return func.lower(column).like(f"%{escaped}%", escape="\\")


M = TypeVar("M")


async def load(session: AsyncSession, model: type[M], key: Any) -> M | None:
    """The aggregate ``model`` with primary key ``key`` (``None`` when missing).

    Inside a unit of work (:meth:`Database.transaction`) its row is locked until the commit
    (``SELECT … FOR UPDATE``) and read afresh: a concurrent unit of work loading the same
    aggregate waits, then sees the committed result and decides on it — two conflicting
    transitions never both pass the state machine (docs/architecture.md, "Concurrent writes").
    SQLite needs no row lock: its units of work run one at a time (``BEGIN IMMEDIATE``).
    In a read session it is a plain ``session.get``.
    """
    if session.info.get(UNIT_OF_WORK):
        return await session.get(model, key, with_for_update=True, populate_existing=True)
    return await session.get(model, key)


def instance_of(model: type[M], values: dict[str, Any]) -> M:
    """An instance of the table class ``model`` holding ``values`` (its fields; the others take their
    defaults), as its constructor would build it but without its per-field work: for a row read from
    the database or values the caller validated, in a Core unit of work (no session involved). The
    instance is an ordinary transient one (attributes, assignment, ``model_dump``, ``session.add``).

    Hand-written because the constructor is the cost: 46 µs for matchmaking's opportunity (20
    fields; SQLModel sets each through the ORM's instrumentation and pydantic's bookkeeping), 3 µs
    here; a publish and a change build one each (``bench/services``, the write at 32 clients)."""
    values = dict(values)
    for name, field in model.model_fields.items():  # type: ignore[attr-defined]
        if name not in values:
            values[name] = field.get_default(call_default_factory=True)
    instance: M = sa_inspect(model).class_manager.new_instance()
    instance.__dict__.update(values)
    object.__setattr__(instance, "__pydantic_fields_set__", set(values))
    object.__setattr__(instance, "__pydantic_extra__", None)
    object.__setattr__(instance, "__pydantic_private__", None)
    return instance


def is_transient_db_error(exc: BaseException) -> bool:
    """Errors worth a retry: the database is away, locked or the connection dropped."""
    if isinstance(exc, OperationalError | ConnectionError | OSError | asyncio.TimeoutError):
        return True
    return isinstance(exc, DBAPIError) and bool(exc.connection_invalidated)


class CoreUnitOfWork:
    """A unit of work on one connection, without an ORM session (:meth:`Database.core_transaction`).

    Core statements go to :meth:`execute` (or :meth:`exec_driver_sql`); ``add_event`` /
    ``add_events`` record events in it; ``info`` is this unit of work's own (not the pooled
    connection's). :meth:`after_commit` registers what runs once it has committed.
    """

    __slots__ = ("_after_commit", "connection", "info")

    def __init__(self, connection: AsyncConnection) -> None:
        self.connection = connection
        self.info: dict[str, Any] = {UNIT_OF_WORK: True}
        self._after_commit: list[Callable[[], None]] = []

    @property
    def dialect(self) -> Any:
        """The connection's SQLAlchemy dialect."""
        return self.connection.dialect

    async def execute(self, statement: Any, parameters: Any = None) -> CursorResult[Any]:
        """Run a Core statement (a list of parameter dicts: one ``executemany``).

        A plain ``table.insert()`` with a list of parameter dicts (a use case's or a batch
        handler's rows) goes to the driver as one ``executemany`` of its compiled text, its values
        converted by the columns' own bind processors (:func:`_insert_plan`): the same statement
        and values, without SQLAlchemy's per-execution statement machinery (see the module's
        docstring for what it saved).
        """
        if type(parameters) is list and parameters and isinstance(statement, Insert):
            plan = _insert_plan(statement, self.connection.dialect, parameters[0])
            if plan is not None:
                sql, names, procs = plan
                try:
                    values = [[p[n] for n in names] for p in parameters]
                except KeyError:  # rows with different keys: SQLAlchemy's own path tells what is missing
                    return await self.connection.execute(statement, parameters)
                rows = [tuple(v if f is None else f(v) for v, f in zip(row, procs, strict=True)) for row in values]
                return await self.connection.exec_driver_sql(sql, rows)
        return await self.connection.execute(statement, parameters)

    async def scalar(self, statement: Any, parameters: Any = None) -> Any:
        """The first column of the first row of a Core statement (``None`` without rows)."""
        return await self.connection.scalar(statement, parameters)

    async def exec_driver_sql(self, statement: str, parameters: Any = None) -> CursorResult[Any]:
        """Run a statement written for the driver (its own parameter style)."""
        return await self.connection.exec_driver_sql(statement, parameters)

    def after_commit(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` once this unit of work has committed (never if it rolled back)."""
        self._after_commit.append(callback)


_INSERT_PLANS: dict[tuple[int, str, tuple[str, ...]], tuple[Any, str, tuple[str, ...], tuple[Any, ...]] | None] = {}
"""(id of the table, dialect, keys) → (the table, kept so its id stays its own, and the plan) or ``None``."""


def _insert_plan(statement: Insert, dialect: Any, first: Any) -> tuple[str, tuple[str, ...], tuple[Any, ...]] | None:
    """For a plain ``table.insert()`` executed with rows of these keys: (driver SQL, the keys in
    parameter order, each one's bind processor), or ``None`` when SQLAlchemy must run it (values,
    RETURNING, a SELECT, hints, CTEs, Python-side column defaults to compute, a non-positional driver).
    A plain insert's text depends only on its table, the dialect and the keys: planned once for them."""
    plain = (
        isinstance(first, dict)
        and statement._values is None
        and not statement._multi_values
        and statement.select is None
        and not statement._returning
        and not statement._return_defaults
        and statement._post_values_clause is None
        and not statement._prefixes
        and not statement._hints
        and not statement._independent_ctes
        and not statement._inline
        and not statement._execution_options
    )
    if not plain:
        return None
    keys = tuple(first)
    table = statement.table
    key = (id(table), dialect.name, keys)
    if key in _INSERT_PLANS:
        found = _INSERT_PLANS[key]
        return None if found is None else (found[1], found[2], found[3])
    plan: tuple[str, tuple[str, ...], tuple[Any, ...]] | None = None
    if dialect.name in ("sqlite", "postgresql"):
        compiled: Any = table.insert().compile(dialect=dialect, column_keys=list(keys), for_executemany=True)
        names = tuple(compiled.positiontup or ())
        if compiled.positional and not compiled.insert_prefetch and names and set(names) <= set(keys):
            procs = compiled._bind_processors
            plan = (compiled.string, names, tuple(procs.get(n) for n in names))
    if len(_INSERT_PLANS) > 512:
        _INSERT_PLANS.clear()
    _INSERT_PLANS[key] = None if plan is None else (table, *plan)
    return plan


class Database:
    """An async engine plus a session factory for one service's database."""

    def __init__(self, url: str, *, schema: str | None = None, echo: bool = False) -> None:
        self.url = url
        self.schema = schema
        self.sqlite = is_sqlite(url)
        kwargs: dict[str, Any] = {"echo": echo}
        if self.sqlite:
            kwargs["connect_args"] = {"timeout": SQLITE_BUSY_TIMEOUT}
            # SQLAlchemy's aiosqlite adaptation, with each statement run in one trip to the
            # driver's thread (see ``_OneTripCursor``).
            kwargs["module"] = _AiosqliteDbapi(aiosqlite, sqlite3)
        else:
            # No pre-ping: it costs BEGIN, a statement and ROLLBACK on every checkout. Connections
            # are recycled instead, a connection the driver already knows closed is discarded at
            # checkout (no round trip), and a unit of work whose BEGIN meets a dropped connection
            # starts again once on a fresh one (see ``transaction``).
            kwargs.update(pool_size=10, max_overflow=10, pool_recycle=1800)
            if schema:
                kwargs["connect_args"] = {"server_settings": {"search_path": schema}}
        self.engine: AsyncEngine = create_async_engine(url, **kwargs)
        if self.sqlite:
            event.listen(self.engine.sync_engine, "connect", _sqlite_pragmas)
            event.listen(self.engine.sync_engine, "begin", _sqlite_begin)
        else:
            event.listen(self.engine.sync_engine.pool, "checkout", _discard_closed)
        self.sessionmaker = async_sessionmaker(self.engine, expire_on_commit=False)
        self._after_outbox_commit: list[Callable[[], None]] = []
        self.scrub_due = asyncio.Event()
        """Set after a commit that erased personal data: the scrub job then clears the leftovers."""
        self._writers: tuple[asyncio.AbstractEventLoop, asyncio.Lock] | None = None
        self._writer: tuple[asyncio.AbstractEventLoop, AsyncConnection] | None = None
        """SQLite: the connection this process's Core units of work write on, kept between them."""

    @asynccontextmanager
    async def sqlite_writer(self) -> AsyncIterator[None]:
        """On SQLite, the turn of one of this process's writers (a no-op on PostgreSQL).

        SQLite has one writer at a time; a writer that finds the write lock taken sleeps and tries
        again (SQLite's busy handler: 1, 2, 5, 10 … ms), so two writers of one process — a use case
        and the outbox relay — lose milliseconds to each other many times a second. Here they queue
        in the event loop instead and each starts the moment the other has committed; writers of
        other processes still meet at SQLite's own lock. Gives up like the busy timeout does.
        """
        if not self.sqlite:
            yield
            return
        loop = asyncio.get_running_loop()
        if self._writers is None or self._writers[0] is not loop:
            self._writers = (loop, asyncio.Lock())
        lock = self._writers[1]
        if lock.locked():
            try:
                async with asyncio.timeout(SQLITE_BUSY_TIMEOUT):
                    await lock.acquire()
            except TimeoutError:
                raise TimeoutError("the database is locked: another writer of this process kept it") from None
        else:
            await lock.acquire()
        try:
            yield
        finally:
            lock.release()

    def on_outbox_commit(self, callback: Callable[[], None]) -> None:
        """Call ``callback`` after each commit that wrote outbox rows (the relay's wake-up)."""
        self._after_outbox_commit.append(callback)

    @contextlib.contextmanager
    def _one_at_a_time(self) -> Iterator[None]:
        """Refuse a unit of work opened inside another on this database (it would wait on itself)."""
        open_now = _open_write.get()
        if open_now is not None and open_now.get(id(self)):
            raise RuntimeError("a unit of work opened inside another on the same database")
        marks = dict(open_now or {})
        marks[id(self)] = True
        token = _open_write.set(marks)
        try:
            yield
        finally:
            marks[id(self)] = False
            _open_write.reset(token)

    def _committed(self, info: dict[str, Any]) -> None:
        """After a unit of work committed: wake the relay if it wrote outbox rows, the scrubber if it erased."""
        if info.pop(OUTBOX_DIRTY, False):
            for callback in self._after_outbox_commit:
                callback()
        if info.pop(SCRUB_DUE, False):
            self.scrub_due.set()

    @asynccontextmanager
    async def transaction(self) -> AsyncIterator[AsyncSession]:
        """One unit of work: yields a session, commits at the end, rolls back on error.

        On SQLite the unit of work takes the database's write lock when it begins (``BEGIN
        IMMEDIATE``), waiting for it up to the busy timeout (behind this process's other writers
        first: :meth:`sqlite_writer`). A deferred transaction that read first
        and writes later fails at once ("database is locked") when another writer committed in
        between — the lock cannot be upgraded from an old snapshot, and no timeout waits for that.
        A unit of work must therefore not open another one on the same database and wait for it.

        For a unit of work made of Core statements only (no ORM objects), :meth:`core_transaction`
        gives the same guarantees without the session's cost.
        """
        with self._one_at_a_time():
            async with self.sqlite_writer(), self.sessionmaker() as session:
                session.info[UNIT_OF_WORK] = True
                try:
                    if self.sqlite:
                        await _begin_immediate(await session.connection())
                    else:
                        await self._begin(session)
                    yield session
                    await session.commit()
                except BaseException:
                    await session.rollback()
                    raise
                self._committed(session.info)

    @asynccontextmanager
    async def core_transaction(self) -> AsyncIterator[CoreUnitOfWork]:
        """One unit of work of Core statements on one connection, without an ORM session.

        The same contract as :meth:`transaction` — ``BEGIN IMMEDIATE`` on SQLite behind this
        process's other writers, a dropped pooled connection replaced once at the start, commit at
        the end and rollback on error, the outbox rows added with ``add_event``/``add_events``
        inserted with one statement just before the commit and the relay woken after it,
        :meth:`request_scrub`, no unit of work inside another — for the hot paths that need no ORM
        objects: a use case inserting rows, a batch handler writing its effects with one statement.
        It yields a :class:`CoreUnitOfWork` (``execute``, ``scalar``, ``exec_driver_sql``, ``info``).
        """
        with self._one_at_a_time():
            async with self.sqlite_writer():
                conn = await self._kept_writer() if self.sqlite else None
                keep = conn is not None
                if conn is None:
                    conn = await self._connect_and_begin()
                uow = CoreUnitOfWork(conn)
                try:
                    yield uow
                    # The outbox rows, the COMMIT and (unless kept) the connection's return to the
                    # pool in one call.
                    await conn.run_sync(_commit_and_close, uow.info.pop(OUTBOX_PENDING, None), not keep)
                except BaseException:
                    uow.info.pop(OUTBOX_PENDING, None)
                    self._writer = None  # never kept after a failure: the next unit of work takes a fresh one
                    await _rollback_quietly(conn)
                    with contextlib.suppress(Exception):  # a broken connection is discarded by the pool
                        await conn.close()
                    raise
            self._committed(uow.info)
            for callback in uow._after_commit:
                callback()

    async def _kept_writer(self) -> AsyncConnection | None:
        """SQLite: the writers' kept connection with the unit of work's transaction begun on it.

        SQLite has one writer at a time and this process's writers take turns (:meth:`sqlite_writer`),
        so one connection serves every Core unit of work in turn, checked out of the pool once
        instead of once per unit of work. It holds no lock between units of work (none is open);
        a unit of work that fails gives it back to the pool and the next checks out a fresh one, as
        does the first one in another event loop. One state row plus one event, CPU per unit of work,
        ten alternated pairs (3,000 or 5,000 each) on a machine loaded by other work: checking out per
        unit of work 410–705 µs, median 496; on the kept connection 322–505 µs, median 420 (lower in
        eight pairs of ten).
        """
        loop = asyncio.get_running_loop()
        kept = self._writer
        if kept is None or kept[0] is not loop or kept[1].closed or kept[1].invalidated:
            self._writer = None
            conn = await self._connect_and_begin()
            self._writer = (loop, conn)
            return conn
        conn = kept[1]
        try:
            conn.sync_connection.begin()  # type: ignore[union-attr]  # no I/O: BEGIN IMMEDIATE goes with the first statement
            await _begin_immediate(conn)
        except BaseException:
            self._writer = None
            await _rollback_quietly(conn)
            with contextlib.suppress(Exception):
                await conn.close()
            raise
        return conn

    async def _connect_and_begin(self) -> AsyncConnection:
        """A pooled connection with the unit of work's transaction begun on it (see :meth:`_begin`)."""
        for attempt in (1, 2):
            conn = await self.engine.connect()
            try:
                conn.sync_connection.begin()  # type: ignore[union-attr]  # no I/O: the driver begins below
                if self.sqlite:
                    await _begin_immediate(conn)
                else:
                    await _start_transaction(conn)
                return conn
            except BaseException as exc:
                retry = attempt == 1 and not self.sqlite and isinstance(exc, Exception) and _is_disconnect(exc)
                if retry:
                    log.info("database connection was closed; beginning again on a new one", error=repr(exc))
                    with contextlib.suppress(Exception):
                        await conn.invalidate()
                await _rollback_quietly(conn)
                with contextlib.suppress(Exception):
                    await conn.close()
                if not retry:
                    raise
        raise AssertionError("unreachable")

    async def _begin(self, session: AsyncSession) -> None:
        """Begin the unit of work's transaction now (the BEGIN it would send with its first statement).

        A connection the server dropped while it sat in the pool (restart, ``pg_terminate_backend``,
        idle timeout) fails here, before any of the caller's work: it is discarded and the unit of
        work begins once more on a fresh connection. Later failures are the caller's to retry.
        """
        for attempt in (1, 2):
            conn = await session.connection()
            try:
                await _start_transaction(conn)
                return
            except Exception as exc:
                if attempt == 2 or not _is_disconnect(exc):
                    raise
                log.info("database connection was closed; beginning again on a new one", error=repr(exc))
                with contextlib.suppress(Exception):
                    await conn.invalidate()
                await session.rollback()

    def request_scrub(self, session: AsyncSession | CoreUnitOfWork) -> None:
        """Mark ``session``'s unit of work as an erasure: once it commits, the scrub job runs."""
        session.info[SCRUB_DUE] = True

    async def scrub(self, tables: Sequence[str]) -> None:
        """Make erased values unreadable on disk, not only in queries.

        SQLite runs with ``secure_delete`` (freed cells are zeroed); the checkpoint copies the
        zeroed pages into the database file and truncates the WAL, which held the old pages.
        PostgreSQL keeps a dead tuple's bytes in the page after a plain ``VACUUM`` (it only
        marks the space free), so ``tables`` are rewritten with ``VACUUM FULL``: a new file,
        the old one removed.
        """
        async with self.engine.connect() as conn:
            if self.sqlite:
                await conn.execute(text("PRAGMA wal_checkpoint(TRUNCATE)"))
                return
            conn = await conn.execution_options(isolation_level="AUTOCOMMIT")
            # VACUUM FULL takes an exclusive lock: if a long transaction holds the table, give up
            # after a moment (the scrubber tries again) rather than queue every query behind it.
            await conn.execute(text("SET lock_timeout = '5s'"))
            done = False
            try:
                for table in tables:
                    await conn.execute(text(f'VACUUM FULL "{table}"'))
                done = True
            finally:
                if done:
                    await conn.execute(text("RESET lock_timeout"))  # the connection goes back to the pool
                else:
                    # Interrupted (lock timeout, shutdown): this connection never goes back to the pool.
                    # No statement here — one on an interrupted connection would raise and hide the
                    # original error (a cancellation above all).
                    await conn.invalidate()

    @asynccontextmanager
    async def read(self) -> AsyncIterator[AsyncSession]:
        """A session for reads only (nothing is committed)."""
        async with self.sessionmaker() as session:
            yield session

    @asynccontextmanager
    async def core_read(self) -> AsyncIterator[AsyncConnection]:
        """A plain connection for reads only, with Core statements (no ORM session, nothing committed).

        For a request's read that only turns rows into its answer: it makes no session and no ORM
        objects. The connection goes back to the pool, rolled back, at the end.
        """
        async with self.engine.connect() as conn:
            yield conn

    async def read_after(self, position: Any, after: int, limit: int, *where: ColumnElement[bool]) -> list[Any]:
        """Up to ``limit`` rows of ``position``'s table whose ``position`` (an increasing integer
        column: an id, a sequence number) is past ``after``, in that order, matching ``where`` —
        a log read from a reader's last position (a live stream's next batch)."""
        async with self.read() as session:
            query = select(position.class_).where(position > after, *where).order_by(position).limit(limit)
            return list((await session.execute(query)).scalars())

    async def ping(self) -> None:
        """Raise if the database cannot answer ``SELECT 1``."""
        async with self.engine.connect() as conn:
            await conn.execute(text("SELECT 1"))

    async def dispose(self) -> None:
        """Close every pooled connection."""
        kept, self._writer = self._writer, None
        if kept is not None and kept[0] is asyncio.get_running_loop():
            with contextlib.suppress(Exception):
                await kept[1].close()
        await self.engine.dispose()


async def preload(session: AsyncSession, model: type[Any], keys: Iterable[Any], *, chunk: int = 500) -> None:
    """Load the rows of ``model`` with these primary keys into ``session`` with one ``SELECT`` (per
    ``chunk`` keys), so that ``session.get(model, key)`` then finds each without a query of its own —
    what a batch handler does before applying its events one by one. Keys not found stay unloaded."""
    wanted = list(dict.fromkeys(keys))
    columns = sa_inspect(model).primary_key
    if len(columns) != 1:
        raise ValueError(f"{model.__name__} has a composite primary key")
    for start in range(0, len(wanted), chunk):
        await session.execute(select(model).where(columns[0].in_(wanted[start : start + chunk])))


async def _start_transaction(conn: Any) -> None:
    """Send the asyncpg connection's BEGIN now rather than with the first statement (awaited
    directly: no greenlet hop)."""
    sync = conn.sync_connection
    dbapi = sync.connection.dbapi_connection if sync is not None else None
    start = getattr(dbapi, "_start_transaction", None)
    if start is not None and getattr(dbapi, "_transaction", True) is None:
        await start()


async def _begin_immediate(conn: Any) -> None:
    """SQLite: the unit of work's ``BEGIN IMMEDIATE``. On aiosqlite it goes to the driver with the
    unit of work's first statement, in the same trip to its thread (or with its COMMIT when it has
    none but outbox rows; nothing is sent for a unit of work that did nothing): the write lock is
    held from before the first statement to the commit, as if sent on its own."""
    sync = conn.sync_connection
    dbapi = sync.connection.dbapi_connection if sync is not None else None
    if isinstance(dbapi, _AiosqliteConnection):
        dbapi._deferred_begin = True
        return
    await conn.exec_driver_sql("BEGIN IMMEDIATE")  # another adaptation: through SQLAlchemy


def _commit_and_close(conn: Any, rows: list[list[Any]] | None, close: bool = True) -> None:
    """A Core unit of work's end, in one hop into SQLAlchemy: its outbox rows, COMMIT, back to the
    pool (unless ``close`` is false: SQLite's kept writer connection)."""
    if rows:
        from distretto_shared.outbox import _insert_rows

        _insert_rows(conn, rows)
    conn.commit()
    if close:
        with contextlib.suppress(Exception):  # committed: a failure to give the connection back is the pool's
            conn.close()


async def _rollback_quietly(conn: AsyncConnection) -> None:
    """Roll back; a connection already broken says so by raising, which must not hide the error that
    got us here (the pool discards such a connection when it is closed)."""
    with contextlib.suppress(Exception):
        await conn.rollback()


def _is_disconnect(exc: BaseException) -> bool:
    """The connection is gone (closed by the server or the network), not a statement's error."""
    if isinstance(exc, DBAPIError):
        return bool(exc.connection_invalidated)
    if isinstance(exc, ConnectionError | OSError):
        return True
    for err in (exc, exc.__cause__, exc.__context__):
        if err is None:
            continue
        name = type(err).__name__
        if name in {"ConnectionDoesNotExistError", "InterfaceError", "AdminShutdownError", "ConnectionFailureError"}:
            return True
        if "connection is closed" in str(err) or "connection was closed" in str(err):
            return True
    return False


def _discard_closed(dbapi_connection: Any, _record: Any, _proxy: Any) -> None:
    """Pool checkout: a connection the driver saw closed is replaced, without a round trip."""
    driver = getattr(dbapi_connection, "driver_connection", None)
    is_closed = getattr(driver, "is_closed", None)
    if is_closed is not None and is_closed():
        raise DisconnectionError("connection closed by the server")


def _sqlite_begin(conn: Any) -> None:
    if conn.get_execution_options().get(_WRITE):
        conn.exec_driver_sql("BEGIN IMMEDIATE")


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    cursor = dbapi_connection.cursor()
    # WAL lets readers run beside the single writer; busy_timeout waits for the lock instead of failing.
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA synchronous=NORMAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA foreign_keys=ON")
    # A deleted or rewritten value is overwritten with zeros, not left in a free block (erasure).
    cursor.execute("PRAGMA secure_delete=ON")
    cursor.close()


# -- SQLite: one trip to the driver's thread per statement ------------------------------------
#
# aiosqlite runs every call in its connection's thread; each call is a round trip between the
# event loop and that thread (a queue, a wake-up of the loop — and, in a busy process, a wait for
# the GIL). SQLAlchemy's adaptation makes three or four of them per statement: open a cursor,
# execute, fetch the rows, close the cursor; and a COMMIT or ROLLBACK is one more even when no
# transaction is open (the pool rolls back every connection it gets back). The classes below run
# a statement's open-execute-fetch-close as one function in the thread, and skip a COMMIT or
# ROLLBACK with no transaction to end (the sqlite3 module would do nothing either): a unit of work
# then costs BEGIN IMMEDIATE, its statements and COMMIT — one trip each.


class _OneTripCursor(AsyncAdapt_aiosqlite_cursor):
    """A cursor whose ``execute``/``executemany`` run, fetch and close in one call to the thread."""

    __slots__ = ("_description", "_lastrowid", "_rowcount")
    _awaitable_cursor_close = False  # nothing stays open in the thread

    def __init__(self, adapt_connection: Any) -> None:  # no driver cursor opened here
        self._adapt_connection = adapt_connection
        self._connection = adapt_connection._connection
        self._cursor = None  # type: ignore[assignment]
        self._soft_closed_memoized = EMPTY_DICT
        self._rows = collections.deque()
        self._description: Any = None
        self._rowcount = -1
        self._lastrowid: Any = None

    @property
    def description(self) -> Any:
        return self._description

    @property
    def rowcount(self) -> int:
        return self._rowcount

    @property
    def lastrowid(self) -> Any:
        return self._lastrowid

    def execute(self, operation: Any, parameters: Any = None) -> Any:
        try:
            return await_(self._run(operation, parameters, many=False))
        except Exception as error:
            self._adapt_connection._handle_exception(error)

    def executemany(self, operation: Any, seq_of_parameters: Any) -> Any:
        try:
            return await_(self._run(operation, seq_of_parameters, many=True))
        except Exception as error:
            self._adapt_connection._handle_exception(error)

    async def _run(self, operation: Any, parameters: Any, *, many: bool) -> None:
        adapt: Any = self._adapt_connection  # an _AiosqliteConnection
        async with adapt._execute_mutex:
            driver = self._connection
            begin = adapt._deferred_begin
            adapt._deferred_begin = False
            description, rows, self._rowcount, self._lastrowid = await driver._execute(
                _in_thread, driver, operation, parameters, many, begin
            )
        self._description = description
        self._rows = collections.deque(rows)


def _in_thread(driver: Any, operation: Any, parameters: Any, many: bool, begin: bool) -> tuple[Any, Any, int, Any]:
    """In aiosqlite's thread: the unit of work's BEGIN if it is still to be sent, then one statement,
    its rows, its cursor closed."""
    if begin:
        driver._conn.execute("BEGIN IMMEDIATE")
    cursor = driver._conn.cursor()
    try:
        if many:
            cursor.executemany(operation, parameters)
        elif parameters is None:
            cursor.execute(operation)
        else:
            cursor.execute(operation, parameters)
        description = cursor.description
        rows = cursor.fetchall() if description else ()
        return description, rows, cursor.rowcount, cursor.lastrowid
    finally:
        cursor.close()


def _commit_in_thread(driver: Any, begin: bool, inserts: list[tuple[str, list[Any]]]) -> None:
    """In aiosqlite's thread: the BEGIN if still to be sent, the rows kept for the commit, COMMIT."""
    conn = driver._conn
    if begin:
        conn.execute("BEGIN IMMEDIATE")
    for sql, rows in inserts:
        conn.executemany(sql, rows)
    conn.commit()


class _AiosqliteConnection(AsyncAdapt_aiosqlite_connection):
    """SQLAlchemy's aiosqlite connection with one-trip cursors and no empty COMMIT/ROLLBACK trip.

    A unit of work's ``BEGIN IMMEDIATE`` travels with its first statement and the outbox rows with
    its COMMIT (:meth:`insert_at_commit`): a unit of work of one statement plus events is two trips
    to the driver's thread.
    """

    __slots__ = ("_at_commit", "_deferred_begin")
    _cursor_cls = _OneTripCursor

    def __init__(self, dbapi: Any, connection: Any) -> None:
        super().__init__(dbapi, connection)
        self._deferred_begin = False
        self._at_commit: list[tuple[str, list[Any]]] = []

    def cursor(self, server_side: bool = False) -> Any:
        if server_side and self._deferred_begin:  # a streamed read keeps its cursor open: BEGIN first
            self._deferred_begin = False
            try:
                await_(self._connection.execute("BEGIN IMMEDIATE"))
            except Exception as error:
                self._handle_exception(error)
        return super().cursor(server_side)

    def insert_at_commit(self, sql: str, rows: list[Any]) -> None:
        """``executemany(sql, rows)`` in the same trip as the COMMIT (dropped by a rollback)."""
        self._at_commit.append((sql, rows))

    def _in_transaction(self) -> bool:
        # sqlite3's flag (sqlite3_get_autocommit) may be read from any thread; nothing else runs
        # on this connection meanwhile (SQLAlchemy uses it for one thing at a time).
        conn = self._connection._connection
        return conn is not None and conn.in_transaction

    def rollback(self) -> None:
        self._deferred_begin = False
        self._at_commit = []
        if self._in_transaction():
            super().rollback()

    def commit(self) -> None:
        begin, inserts = self._deferred_begin, self._at_commit
        self._deferred_begin = False
        if inserts:
            self._at_commit = []
            driver = self._connection
            try:
                await_(driver._execute(_commit_in_thread, driver, begin, inserts))
            except Exception as error:
                self._handle_exception(error)
            return
        if not begin and self._in_transaction():
            super().commit()


class _AiosqliteDbapi(AsyncAdapt_aiosqlite_dbapi):
    """The aiosqlite DBAPI adaptation handing out :class:`_AiosqliteConnection`."""

    def connect(self, *arg: Any, **kw: Any) -> AsyncAdapt_aiosqlite_connection:
        creator_fn = kw.pop("async_creator_fn", None)
        connection = creator_fn(*arg, **kw) if creator_fn else self.aiosqlite.connect(*arg, **kw)
        thread = connection if isinstance(connection, Thread) else getattr(connection, "_thread", None)
        if thread is not None:
            thread.daemon = True  # as SQLAlchemy does: a forgotten connection never holds the exit
        return _AiosqliteConnection(self, await_(connection))
