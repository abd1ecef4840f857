"""Queries of the register, and who may see what (docs/service-guide.md, "Authorisation").

Every use case loads an organisation through one of these, so the rule sits next to the query:

- :func:`visible`: the register's public part. An organisation that is or was a member is
  public; an application (applied, rejected) only to itself and staff — 404 to others.
- :func:`own`: an organisation's private records (figures, renewals, history, contacts, its
  changes): the organisation's own members and staff; 403 to others (it is public, this is not).
- :func:`for_staff`: lifecycle decisions and bulk work: staff only (403).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from sqlalchemy import RowMapping, Select, String, bindparam, cast, func, or_, select
from sqlalchemy.ext.asyncio import AsyncConnection, AsyncSession
from sqlmodel import col

from distretto_shared.db import CoreUnitOfWork, contains_text, load
from distretto_shared.web import NotFound
from membership.common import Ctx
from membership.figures.domain import SizeClass
from membership.lifecycle.domain import MembershipStatus
from membership.organisations.domain import PUBLIC_STATUSES, OrganisationKind, OrganisationOrder, Sector
from membership.organisations.models import Organisation
from membership.tables import fields


async def get(session: AsyncSession, organisation_id: str) -> Organisation:
    """Load without a caller (the service's own scans); 404 when missing."""
    org = await load(session, Organisation, organisation_id)
    if org is None:
        raise NotFound(f"organisation {organisation_id} does not exist")
    return org


async def visible(ctx: Ctx, session: AsyncSession, organisation_id: str) -> Organisation:
    """The organisation, when the caller may know it exists (404 otherwise)."""
    org = await load(session, Organisation, organisation_id)
    if org is None or not (ctx.acts_for(org.id) or org.status in PUBLIC_STATUSES):
        raise NotFound(f"organisation {organisation_id} does not exist")
    return org


_ORGANISATION = Organisation.__table__  # type: ignore[attr-defined]
_ORGANISATION_ROW = select(_ORGANISATION).where(_ORGANISATION.c.id == bindparam("id"))
"""Built once, the id a bound parameter: SQLAlchemy neither builds nor keys it per request."""


_ORGANISATION_INSERT = _ORGANISATION.insert()
_VAT_HOLDER = (
    select(_ORGANISATION.c.id, _ORGANISATION.c.name).where(_ORGANISATION.c.vat_number == bindparam("vat")).limit(1)
)


async def vat_holder_row(uow: CoreUnitOfWork, vat: str | None) -> RowMapping | None:
    """:func:`vat_holder` in a Core unit of work: the id and name of the organisation registered with
    this VAT number, if any."""
    if not vat:
        return None
    return (await uow.execute(_VAT_HOLDER, {"vat": vat})).mappings().first()


async def insert(uow: CoreUnitOfWork, org: Organisation) -> None:
    """Insert a new organisation (built, not yet stored) in a Core unit of work."""
    await uow.execute(_ORGANISATION_INSERT, [fields(org)])


_ORGANISATION_LOCKED = _ORGANISATION_ROW.with_for_update()
_ORGANISATION_UPDATE = _ORGANISATION.update().where(_ORGANISATION.c.id == bindparam("organisation_key"))


async def for_staff_in(ctx: Ctx, uow: CoreUnitOfWork, organisation_id: str, what: str) -> Organisation:
    """:func:`for_staff` in a Core unit of work: the organisation, its row locked until the commit
    (``SELECT … FOR UPDATE``, as :func:`load` locks it in a session), for a staff decision."""
    ctx.require_staff(what)
    row = (await uow.execute(_ORGANISATION_LOCKED, {"id": organisation_id})).mappings().first()
    if row is None:
        raise NotFound(f"organisation {organisation_id} does not exist")
    return Organisation.model_validate(dict(row))


async def update(uow: CoreUnitOfWork, organisation_id: str, values: dict[str, Any]) -> None:
    """Store these columns of an organisation (a Core unit of work's ``UPDATE``)."""
    await uow.execute(_ORGANISATION_UPDATE, {**values, "organisation_key": organisation_id})


async def visible_row(ctx: Ctx, conn: AsyncConnection, organisation_id: str) -> RowMapping:
    """:func:`visible` for a read on a plain connection (``Database.core_read``): the organisation's
    row, no ORM object, under the same rule (404 when the caller may not know it exists)."""
    row = (await conn.execute(_ORGANISATION_ROW, {"id": organisation_id})).mappings().first()
    if row is None or not (ctx.acts_for(row["id"]) or row["status"] in PUBLIC_STATUSES):
        raise NotFound(f"organisation {organisation_id} does not exist")
    return row


async def own(ctx: Ctx, session: AsyncSession, organisation_id: str, what: str) -> Organisation:
    """The organisation, when the caller may see and change its private records (403 otherwise)."""
    org = await visible(ctx, session, organisation_id)
    ctx.require_private_of(org.id, what)
    return org


async def for_staff(ctx: Ctx, session: AsyncSession, organisation_id: str, what: str) -> Organisation:
    """The organisation, for a staff decision (403 for everyone else)."""
    ctx.require_staff(what)
    return await get(session, organisation_id)


async def vat_holder(session: AsyncSession, vat: str | None, exclude_id: str | None = None) -> Organisation | None:
    """The organisation registered with this VAT number (another than ``exclude_id``), if any."""
    if not vat:
        return None
    query = select(Organisation).where(col(Organisation.vat_number) == vat)
    if exclude_id:
        query = query.where(col(Organisation.id) != exclude_id)
    return (await session.execute(query.limit(1))).scalar_one_or_none()


@dataclass(frozen=True)
class OrganisationFilter:
    """Filters of the organisation list and the CSV export."""

    kind: OrganisationKind | None = None
    sector: Sector | None = None
    status: MembershipStatus | None = None
    province: str | None = None
    size_class: SizeClass | None = None
    q: str | None = None

    def conditions(self) -> list[Any]:
        """SQL conditions, portable between SQLite and PostgreSQL."""
        where: list[Any] = []
        if self.kind:
            where.append(col(Organisation.kind) == self.kind.value)
        if self.status:
            where.append(col(Organisation.status) == self.status.value)
        if self.size_class:
            where.append(col(Organisation.size_class) == self.size_class.value)
        if self.province:
            where.append(func.upper(Organisation.province) == self.province.strip().upper())
        if self.sector:
            # sectors is a JSON list of enum values: its text holds "<value>" with the quotes.
            where.append(cast(Organisation.sectors, String).like(f'%"{self.sector.value}"%'))
        if self.q and self.q.strip():
            where.append(
                or_(
                    *(
                        contains_text(column, self.q)
                        for column in (
                            Organisation.name,
                            Organisation.description,
                            Organisation.city,
                            cast(Organisation.keywords, String),
                            cast(Organisation.competences, String),
                        )
                    )
                )
            )
        return where


def register_query(ctx: Ctx, flt: OrganisationFilter) -> Select[Any]:
    """The organisations matching ``flt`` that the caller may see (others' applications left out)."""
    where = flt.conditions()
    if not ctx.sees_everything:
        own_id = ctx.own_organisation()
        public = col(Organisation.status).in_(sorted(PUBLIC_STATUSES))
        where.append(or_(public, col(Organisation.id) == own_id) if own_id else public)
    return select(Organisation).where(*where)


def order_by(order: OrganisationOrder) -> list[Any]:
    """ORDER BY for the register: the column (empty values last in both directions), then name, then id.

    The name and id after the column make the order total, so pages never repeat or skip a row.
    """
    name = func.lower(Organisation.name)
    if order.column == "name":
        return [name.desc() if order.descending else name, col(Organisation.id)]
    column = getattr(Organisation, order.column)
    empty = column.is_(None)
    if order.column == "province":
        empty = or_(empty, column == "")
        column = func.upper(column)
    return [empty, column.desc() if order.descending else column, name, col(Organisation.id)]


async def matching(session: AsyncSession, flt: OrganisationFilter) -> list[Organisation]:
    """Every organisation matching ``flt``, by name (the export: staff only)."""
    query = select(Organisation).where(*flt.conditions()).order_by(Organisation.name, Organisation.id)
    return list((await session.execute(query)).scalars().all())
