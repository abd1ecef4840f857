"""Queries of opportunities, and who may see one (docs/service-guide.md, "Authorisation")."""

from __future__ import annotations

import functools
from typing import Any

from sqlalchemy import String, bindparam, cast
from sqlalchemy import select as sa_select
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select

from distretto_shared.db import CoreUnitOfWork, instance_of, load
from distretto_shared.web import NotFound
from matchmaking.common import Ctx, today
from matchmaking.opportunities.domain import OpportunityStatus
from matchmaking.opportunities.models import (
    Opportunity,
)
from matchmaking.profiles.models import Organisation
from matchmaking.search.indexing import opportunity_recorded


async def get_opportunity_row(session: AsyncSession, opportunity_id: str) -> Opportunity:
    o = await load(session, Opportunity, opportunity_id)
    if o is None:
        raise NotFound(f"opportunity {opportunity_id} not found")
    return o


# -- who may see what (docs/service-guide.md, "Authorisation") ------------------------------------
#
# An opportunity's owner view, its ranking and its matches belong to the owning organisation
# and staff. Others see a published opportunity only anonymised (/public/...): the owner view
# of a published one answers 403 (it is public, this view is not), of any other one 404.
# A match belongs to its two sides: anyone else gets 404, meeting place included.


def is_published(o: Opportunity) -> bool:
    return o.status == OpportunityStatus.ACTIVE and o.expires_on >= today()


async def opportunity_for(ctx: Ctx, session: AsyncSession, opportunity_id: str, what: str) -> Opportunity:
    """The opportunity, for its owner and staff (403 when published, 404 otherwise)."""
    o = await load(session, Opportunity, opportunity_id)
    if o is not None and ctx.acts_for(o.owner_organisation_id):
        return o
    if o is not None and is_published(o) and not ctx.principal.is_anonymous:
        ctx.require_private_of(o.owner_organisation_id, what)
    raise NotFound(f"opportunity {opportunity_id} not found")


_TABLE: Any = Opportunity.__table__  # type: ignore[attr-defined]


@functools.cache
def _with_owner(sqlite: bool) -> Any:
    """An opportunity's row (``opportunity_id``), locked, its owner's status and its recorded index
    items (built once per database kind)."""
    return (
        sa_select(*_TABLE.columns, col(Organisation.status).label("owner_status"), opportunity_recorded(sqlite))
        .select_from(
            _TABLE.outerjoin(Organisation, col(Organisation.organisation_id) == _TABLE.c.owner_organisation_id)
        )
        .where(_TABLE.c.id == bindparam("opportunity_id", type_=String))
        .with_for_update(of=_TABLE)  # the opportunity's row only (SQLite: one writer anyway)
    )


_COLUMNS = tuple(c.key for c in _TABLE.columns)


async def locked_opportunity_and_owner(
    ctx: Ctx, uow: CoreUnitOfWork, opportunity_id: str, what: str
) -> tuple[Opportunity, bool, list[Any]]:
    """In a Core unit of work: :func:`opportunity_for` (the row locked, as ``load`` does; the
    opportunity returned is built from it, not an instance of a session), whether its owner is an
    active organisation (its profile lists the opportunity), and its rows in the search index
    (:func:`~matchmaking.search.indexing.opportunity_recorded`), read by the same statement."""
    statement = _with_owner(uow.dialect.name == "sqlite")
    row: Any = (await uow.execute(statement, {"opportunity_id": opportunity_id})).first()
    o = instance_of(Opportunity, dict(zip(_COLUMNS, row, strict=False))) if row is not None else None
    if o is not None and ctx.acts_for(o.owner_organisation_id):
        return o, row[-2] == "active", list(row[-1] or [])
    if o is not None and is_published(o) and not ctx.principal.is_anonymous:
        ctx.require_private_of(o.owner_organisation_id, what)
    raise NotFound(f"opportunity {opportunity_id} not found")


def opportunity_query(
    *, opportunity_type: str | None, status: str | None, owner: str | None, sector: str | None, reference: str | None
) -> Any:
    q = select(Opportunity)
    if opportunity_type:
        q = q.where(Opportunity.opportunity_type == opportunity_type)
    if status:
        q = q.where(Opportunity.status == status)
    if owner:
        q = q.where(Opportunity.owner_organisation_id == owner)
    if reference:
        q = q.where(Opportunity.reference == reference)
    if sector:
        # sectors is a JSON list of lower-case codes: its text holds "<code>" with the quotes
        # (LIKE's wildcards in the code escaped), the same on SQLite and PostgreSQL.
        q = q.where(cast(Opportunity.sectors, String).contains(f'"{sector}"', autoescape=True))
    return q
