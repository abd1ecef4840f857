"""The name forms of every organisation the service knows (what anonymisation removes), kept in memory.

Working out :func:`~matchmaking.anonymise.brand_forms` of the whole register and compiling its
patterns on every write and public read made both cost the size of the register. The forms are
kept per organisation instead, and brought up to date from the index change log: every change to
an organisation (its registration, a new name or website, a status) appends ``profile:<id>`` to
that log in the same transaction, in commit order, whichever instance made it. Before each use,
one statement reads the log's last id; only when it moved are the organisations it names since
reloaded (one more statement), and the patterns recompiled only when a form changed. The
register is read whole again at the first use and after half the log's retention without a look
(its older entries may have been pruned).
"""

from __future__ import annotations

import time
from collections.abc import Iterable

from sqlalchemy import func
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select

from matchmaking.anonymise import NamePatterns, brand_forms
from matchmaking.profiles.models import Organisation
from matchmaking.search.store import IndexChange

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
        last = int((await session.execute(select(func.max(IndexChange.id)))).scalar() or 0)
        now = time.monotonic()
        if self._cursor is None or now - self._synced_at > self.full_reload_after or last < self._cursor:
            await self._load_all(session, last, now)
        elif last > self._cursor:
            await self._load_changed(session, self._cursor, last, now)
        return self._patterns

    async def forms(self, session: AsyncSession) -> list[str]:
        """Every form of every known organisation's name, sorted."""
        return sorted((await self.patterns(session)).names)

    async def _load_all(self, session: AsyncSession, last: int, now: float) -> None:
        rows = (
            await session.execute(select(Organisation.organisation_id, Organisation.name, Organisation.website))
        ).all()
        sources = {oid: (name, website) for oid, name, website in rows}
        forms = {oid: frozenset(brand_forms(name, website)) for oid, (name, website) in sources.items()}
        self._install(sources, forms, last, now, rebuild=True)
        self.reloads += 1

    async def _load_changed(self, session: AsyncSession, after: int, last: int, now: float) -> None:
        changed = select(func.substr(IndexChange.doc_key, len(PROFILE_PREFIX) + 1)).where(
            col(IndexChange.id) > after,
            col(IndexChange.id) <= last,
            col(IndexChange.doc_key).startswith(PROFILE_PREFIX),
        )
        q = select(Organisation.organisation_id, Organisation.name, Organisation.website).where(
            col(Organisation.organisation_id).in_(changed.scalar_subquery())
        )
        found = {oid: (name, website) for oid, name, website in (await session.execute(q)).all()}
        if self._cursor is None or last <= self._cursor:
            return  # another request brought the copy further meanwhile
        sources, forms = dict(self._sources), dict(self._forms)
        rebuild = False
        for oid, source in found.items():
            if source == sources.get(oid):
                continue
            rebuild = True
            sources[oid] = source
            forms[oid] = frozenset(brand_forms(*source))
        self._install(sources, forms, last, now, rebuild=rebuild)

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


def _union(sets: Iterable[frozenset[str]]) -> set[str]:
    out: set[str] = set()
    for s in sets:
        out |= s
    return out
