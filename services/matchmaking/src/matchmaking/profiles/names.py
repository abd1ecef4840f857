"""The name forms of every organisation the service knows (what anonymisation removes), kept in memory.

Working out :func:`~matchmaking.anonymise.brand_forms` of the whole register and compiling its
patterns on every write and public read made both cost the size of the register. The forms are
kept per organisation instead, and brought up to date from the index change log: every change to
an organisation (its registration, a new name or website, a status) appends ``profile:<id>`` to
that log in the same transaction, in commit order, whichever instance made it. Before each use,
one statement reads the log's last position (``search.store.log_order``) and the organisations it
names since the last look, and the patterns are recompiled only when a form changed. The register
is read whole again at the first use and after half the log's retention without a look (its older
entries may have been pruned).
"""

from __future__ import annotations

import functools
import time
from collections.abc import Iterable
from typing import Any

import sqlalchemy as sa
from sqlalchemy import func
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select

from distretto_shared.db import CoreUnitOfWork
from matchmaking.anonymise import NamePatterns, brand_forms
from matchmaking.profiles.models import Organisation
from matchmaking.search.store import IndexChange, log_order

PROFILE_PREFIX = "profile:"


class OrganisationNames:
    """This instance's copy of the organisations' name forms, and their compiled patterns."""

    def __init__(self, full_reload_after: float = 43200.0) -> None:
        self.full_reload_after = full_reload_after
        self._sources: dict[str, tuple[str, str | None]] = {}
        """organisation id → (name, website) the forms were worked out from."""
        self._forms: dict[str, frozenset[str]] = {}
        self._cursor: int | None = None
        """The change-log id up to which the copy is current (None: never loaded)."""
        self._synced_at = 0.0
        self._patterns = NamePatterns(())
        self.reloads = 0
        """How many times the whole register was read (for tests and diagnostics)."""

    async def patterns(self, session: AsyncSession) -> NamePatterns:
        """The compiled forms of every organisation, as of the last committed change ``session`` sees."""
        return (await self.patterns_and_status(session, None))[0]

    async def patterns_and_status(
        self, session: AsyncSession | CoreUnitOfWork, organisation_id: str | None
    ) -> tuple[NamePatterns, str | None]:
        """:meth:`patterns`, and the status of organisation ``organisation_id`` (None: not known
        here) read by the same statement (a writer needs both: what to anonymise, and whether the
        owner of what it writes has a profile). ``session``: a session or a Core unit of work."""
        now = time.monotonic()
        if self._cursor is None or now - self._synced_at > self.full_reload_after:
            last = int((await session.execute(select(func.max(_order(session))))).scalar() or 0)
            await self._load_all(session, last, now)
            status = None
            if organisation_id is not None:
                q = select(Organisation.status).where(Organisation.organisation_id == organisation_id)
                status = (await session.execute(q)).scalar()
            return self._patterns, status
        return self._patterns, await self._load_changed(session, self._cursor, now, organisation_id)

    async def forms(self, session: AsyncSession) -> list[str]:
        """Every form of every known organisation's name, sorted."""
        return sorted((await self.patterns(session)).names)

    async def _load_all(self, session: AsyncSession | CoreUnitOfWork, last: int, now: float) -> None:
        rows = (
            await session.execute(select(Organisation.organisation_id, Organisation.name, Organisation.website))
        ).all()
        sources = {oid: (name, website) for oid, name, website in rows}
        forms = {oid: frozenset(brand_forms(name, website)) for oid, (name, website) in sources.items()}
        self._install(sources, forms, last, now, rebuild=True)
        self.reloads += 1

    async def _load_changed(
        self, session: AsyncSession | CoreUnitOfWork, after: int, now: float, status_of: str | None
    ) -> str | None:
        """Bring the copy up to date; returns the status of organisation ``status_of``."""
        # One statement: the log's last position (the row without an organisation), the organisations
        # named in the log since ``after``, and the status of ``status_of`` (a row of its own). On the
        # unit of work's connection: nothing of the session's needs flushing for it.
        statement = _changed_statement(_is_sqlite(session), status_of is not None)
        params: dict[str, Any] = {"after": after} if status_of is None else {"after": after, "status_of": status_of}
        conn: Any = session if isinstance(session, CoreUnitOfWork) else await session.connection()
        rows: list[Any] = list((await conn.execute(statement, params)).all())
        last = max((int(r[3]) for r in rows if r[3] is not None), default=0)
        found = {r[0]: (r[1], r[2]) for r in rows if r[0] is not None}
        status = next((r[4] for r in rows if r[4] is not None), None)
        if last < after:
            await self._load_all(session, last, now)  # the log was emptied (pruned whole): start again
            return status
        if self._cursor is None or last <= self._cursor:
            return status  # nothing new, or another request brought the copy further meanwhile
        sources, forms = dict(self._sources), dict(self._forms)
        rebuild = False
        for oid, source in found.items():
            if source == sources.get(oid):
                continue
            rebuild = True
            sources[oid] = source
            forms[oid] = frozenset(brand_forms(*source))
        self._install(sources, forms, last, now, rebuild=rebuild)
        return status

    def _install(
        self,
        sources: dict[str, tuple[str, str | None]],
        forms: dict[str, frozenset[str]],
        last: int,
        now: float,
        *,
        rebuild: bool,
    ) -> None:
        if rebuild:
            self._patterns = NamePatterns(_union(forms.values()))
        self._sources, self._forms = sources, forms
        self._cursor, self._synced_at = last, now


def _is_sqlite(session: AsyncSession | CoreUnitOfWork) -> bool:
    if isinstance(session, CoreUnitOfWork):
        return bool(session.dialect.name == "sqlite")
    bind = session.bind
    return bind is not None and bind.dialect.name == "sqlite"


def _order(session: AsyncSession | CoreUnitOfWork) -> Any:
    """The change log's commit-order column on ``session``'s database."""
    return log_order(_is_sqlite(session))


@functools.cache
def _changed_statement(sqlite: bool, with_status: bool) -> Any:
    """The statement of :meth:`OrganisationNames._load_changed` (built once: building it cost a
    write more than running it), with the parameters ``after`` and ``status_of``."""
    order = log_order(sqlite)
    last_id = sa.select(sa.null(), sa.null(), sa.null(), func.max(order), sa.null())
    named = select(func.substr(IndexChange.doc_key, len(PROFILE_PREFIX) + 1)).where(
        order > sa.bindparam("after", type_=sa.BigInteger), col(IndexChange.doc_key).startswith(PROFILE_PREFIX)
    )
    changed = sa.select(
        col(Organisation.organisation_id), col(Organisation.name), col(Organisation.website), sa.null(), sa.null()
    ).where(col(Organisation.organisation_id).in_(named.scalar_subquery()))
    branches: list[Any] = [last_id, changed]
    if with_status:
        branches.append(
            sa.select(sa.null(), sa.null(), sa.null(), sa.null(), col(Organisation.status)).where(
                col(Organisation.organisation_id) == sa.bindparam("status_of", type_=sa.String)
            )
        )
    return sa.union_all(*branches)


def _union(sets: Iterable[frozenset[str]]) -> set[str]:
    out: set[str] = set()
    for s in sets:
        out |= s
    return out
