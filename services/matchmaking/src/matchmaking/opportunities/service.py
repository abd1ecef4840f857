"""Use cases of opportunities: publish, change, renew, withdraw, expire, list; one unit of work each."""

from __future__ import annotations

from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import date
from typing import Any

from sqlalchemy import String, bindparam, text
from sqlalchemy import select as sa_select
from sqlalchemy.dialects import postgresql
from sqlalchemy.exc import IntegrityError
from sqlmodel import col, select

from distretto_shared.contracts import matchmaking as contracts
from distretto_shared.conventions import paginate
from distretto_shared.db import CoreUnitOfWork, instance_of
from distretto_shared.outbox import add_event
from distretto_shared.web import Conflict, Invalid, NotFound, Page, PageParams
from matchmaking.anonymise import NamePatterns, anonymise_list, anonymise_text
from matchmaking.common import Ctx, today
from matchmaking.opportunities.domain import OpportunityStatus, OpportunityType, add_months
from matchmaking.opportunities.models import (
    Opportunity,
    OpportunityAnonymous,
    OpportunityCreate,
    OpportunityPublic,
    OpportunityUpdate,
    RenewRequest,
)
from matchmaking.opportunities.repository import (
    get_opportunity_row,
    locked_opportunity_and_owner,
    opportunity_for,
    opportunity_query,
)
from matchmaking.profiles.repository import org_names, org_names_and_status
from matchmaking.search.indexing import OPPORTUNITY, Along, forget_changes, refresh_documents, refresh_opportunity
from matchmaking.tables import utcnow

NEWEST_FIRST = (col(Opportunity.created_at).desc(), Opportunity.id)
"""The order of the opportunity lists (the id breaks ties, so pages never overlap)."""

_TABLE: Any = Opportunity.__table__  # type: ignore[attr-defined]
_QUOTE = postgresql.dialect().identifier_preparer.quote
_VALUES = {c.key: bindparam(f"v_{c.key}", type_=c.type) for c in _TABLE.columns}
"""Each column's parameter (``v_<column>``), typed as the column (JSON lists serialised, dates bound)."""
_INSERT = text(
    f"INSERT INTO {_QUOTE(_TABLE.name)} ({', '.join(_QUOTE(c.name) for c in _TABLE.columns)}) "
    f"VALUES ({', '.join(f':v_{c.key}' for c in _TABLE.columns)})"
).bindparams(*_VALUES.values())
_UPDATE = text(
    f"UPDATE {_QUOTE(_TABLE.name)} SET "
    + ", ".join(f"{_QUOTE(c.name)} = :v_{c.key}" for c in _TABLE.columns if c.key != "id")
    + f" WHERE {_QUOTE(_TABLE.c.id.name)} = :v_id"
).bindparams(*_VALUES.values())
"""An opportunity's row inserted, or written whole (the row is locked: nothing else changes it meanwhile):
statements as text (the same on SQLite and PostgreSQL, which types each parameter from its column),
so that the index write can run them with its own (:class:`~matchmaking.search.indexing.Along`)."""
_BY_REFERENCE = sa_select(_TABLE.c.id).where(_TABLE.c.reference == bindparam("reference", type_=String))


def row_values(o: Opportunity) -> dict[str, Any]:
    """An opportunity's column values, as the parameters of ``_INSERT`` and ``_UPDATE``."""
    return {f"v_{c.key}": getattr(o, c.key) for c in _TABLE.columns}


@asynccontextmanager
async def _indexed_write(ctx: Ctx) -> AsyncIterator[CoreUnitOfWork]:
    """A Core unit of work that records index items (``refresh_opportunity``): what it logged is
    forgotten if it rolls back."""
    uow: CoreUnitOfWork | None = None
    try:
        async with ctx.db.core_transaction() as uow:
            yield uow
    except BaseException:
        if uow is not None:
            forget_changes(uow.info)
        raise


def to_public(o: Opportunity) -> OpportunityPublic:
    return OpportunityPublic.model_validate(o, from_attributes=True)


def _own_filter(ctx: Ctx, q: Any, owner_column: Any) -> Any:
    """A list query narrowed to the caller's organisation (staff: unchanged; partners: 403)."""
    if ctx.sees_everything:
        return q
    ctx.require_member_or_staff("list these records")
    return q.where(owner_column == ctx.own_organisation())


def _published_event(o: Opportunity, names: NamePatterns) -> contracts.OpportunityPublished:
    return contracts.OpportunityPublished(
        opportunity_id=o.id,
        opportunity_type=o.opportunity_type,
        title=anonymise_text(o.title, names),
        summary=anonymise_text(o.summary, names),
        keywords=anonymise_list(o.keywords, names),
        sectors=o.sectors,
        country=o.country,
        expires_on=o.expires_on,
        owner_organisation_id=o.owner_organisation_id,
        topic_code=o.topic_code,
    )


async def create_opportunity(ctx: Ctx, data: OpportunityCreate) -> OpportunityPublic:
    """Publish a new opportunity: stored, indexed, announced (anonymised)."""
    ctx.require_private_of(data.owner_organisation_id, "publish opportunities for this organisation")
    now = today()
    expires_on = data.expires_on or add_months(now, ctx.settings.default_validity_months)
    if expires_on <= now:
        raise Invalid("expires_on must be in the future", details={"expires_on": expires_on.isoformat()})
    if data.deadline is not None and data.deadline < now:
        raise Invalid("the call deadline has already passed", details={"deadline": data.deadline.isoformat()})
    values = data.model_dump(exclude={"expires_on"})
    values |= {"expires_on": expires_on, "opportunity_type": OpportunityType(data.opportunity_type).value}
    o = instance_of(Opportunity, values)  # validated above: built without the constructor's per-field work
    try:
        # A Core unit of work: the row inserted as built here (no session, nothing flushed).
        async with _indexed_write(ctx) as uow:
            if data.reference:
                existing = await uow.execute(_BY_REFERENCE, {"reference": data.reference})
                if existing.first():
                    raise Conflict(f"an opportunity with reference {data.reference} exists already")
            names, owner_status = await org_names_and_status(ctx, uow, o.owner_organisation_id)
            add_event(uow, _published_event(o, names), source=ctx.source)
            # The row and the event are inserted by the index write's statement (PostgreSQL: one round
            # trip for the three).
            along = Along(_INSERT, row_values(o))
            await refresh_opportunity(ctx, uow, o, created=True, owner_active=owner_status == "active", along=along)
    except IntegrityError as exc:
        raise Conflict(f"an opportunity with reference {data.reference} exists already") from exc
    return to_public(o)


async def update_opportunity(ctx: Ctx, opportunity_id: str, data: OpportunityUpdate) -> OpportunityPublic:
    """Change an opportunity; it is re-indexed (its text queued for encoding when it changed)."""
    changes = data.model_dump(exclude_unset=True)
    if not changes:
        raise Invalid("nothing to change")
    # One Core unit of work: the row is read locked (and the caller's right to it checked) once,
    # changed here and written whole.
    async with _indexed_write(ctx) as uow:
        o, owner_active, recorded = await locked_opportunity_and_owner(
            ctx, uow, opportunity_id, "change this opportunity"
        )
        is_search = o.opportunity_type == OpportunityType.PARTNER_SEARCH
        for name in ("topic_code", "role_sought", "deadline"):
            if not is_search and changes.get(name) is not None:
                raise Invalid(f"{name} belongs to partner searches only")
            if is_search and name in ("topic_code", "role_sought") and name in changes and changes[name] is None:
                raise Invalid(f"a partner search needs its {name}")
        for name, value in changes.items():
            setattr(o, name, value.value if hasattr(value, "value") else value)
        o.updated_at = utcnow()
        along = Along(_UPDATE, row_values(o))
        await refresh_opportunity(ctx, uow, o, created=False, owner_active=owner_active, recorded=recorded, along=along)
    return to_public(o)


async def renew_opportunity(ctx: Ctx, opportunity_id: str, req: RenewRequest) -> OpportunityPublic:
    """Extend an opportunity's validity (an expired one is published again)."""
    now = today()
    async with ctx.db.transaction() as session:
        o = await opportunity_for(ctx, session, opportunity_id, "renew this opportunity")
        if o.status == OpportunityStatus.WITHDRAWN:
            raise Conflict("a withdrawn opportunity is not renewed: publish a new one")
        new_expiry = req.expires_on or add_months(now, req.months or 12)
        if new_expiry <= now:
            raise Invalid("the new expiry must be in the future")
        if new_expiry <= o.expires_on:
            raise Invalid(f"the new expiry must be after the current one ({o.expires_on.isoformat()})")
        o.expires_on = new_expiry
        o.status = OpportunityStatus.ACTIVE.value
        o.renewals += 1
        o.updated_at = utcnow()
        session.add(o)
        add_event(session, contracts.OpportunityRenewed(opportunity_id=o.id, expires_on=new_expiry), source=ctx.source)
        # Re-indexed, not only re-activated: an opportunity is also an item of its owner's profile.
        await refresh_documents(ctx, session, [f"{OPPORTUNITY}:{o.id}"])
    return to_public(o)


async def withdraw_opportunity(ctx: Ctx, opportunity_id: str) -> OpportunityPublic:
    """The owner (or staff) takes an opportunity off the market before it expires."""
    async with ctx.db.transaction() as session:
        o = await opportunity_for(ctx, session, opportunity_id, "withdraw this opportunity")
        if o.status != OpportunityStatus.ACTIVE:
            raise Conflict(f"the opportunity is {o.status}, not active")
        o.status = OpportunityStatus.WITHDRAWN.value
        o.updated_at = utcnow()
        session.add(o)
        add_event(session, contracts.OpportunityWithdrawn(opportunity_id=o.id), source=ctx.source)
        # Its item leaves the owner's profile too (refresh_documents records it without it).
        await refresh_documents(ctx, session, [f"{OPPORTUNITY}:{o.id}"])
    return to_public(o)


async def expire_due(ctx: Ctx, on: date | None = None) -> list[str]:
    """Mark every active opportunity past its expiry as expired (the periodic job)."""
    on = on or today()
    async with ctx.db.transaction() as session:
        due = list(
            (
                await session.execute(
                    select(Opportunity)
                    .where(Opportunity.status == OpportunityStatus.ACTIVE.value, Opportunity.expires_on < on)
                    .order_by(Opportunity.id)
                    # Locked: a withdrawal or renewal at this moment is decided before or after, not both.
                    .with_for_update()
                )
            ).scalars()
        )
        for o in due:
            o.status = OpportunityStatus.EXPIRED.value
            o.updated_at = utcnow()
            session.add(o)
            add_event(session, contracts.OpportunityExpired(opportunity_id=o.id), source=ctx.source)
        if due:
            # Their items leave their owners' profiles too.
            await refresh_documents(ctx, session, [f"{OPPORTUNITY}:{o.id}" for o in due])
    return [o.id for o in due]


async def get_opportunity(ctx: Ctx, opportunity_id: str) -> OpportunityPublic:
    """One opportunity, as its owner sees it."""
    async with ctx.db.read() as session:
        return to_public(await opportunity_for(ctx, session, opportunity_id, "see this opportunity's owner view"))


async def list_opportunities(
    ctx: Ctx,
    page: PageParams,
    *,
    opportunity_type: str | None = None,
    status: str | None = None,
    owner: str | None = None,
    sector: str | None = None,
    reference: str | None = None,
) -> Page[OpportunityPublic]:
    """Opportunities, newest first, filtered; a member sees its own organisation's."""
    q = opportunity_query(
        opportunity_type=opportunity_type, status=status, owner=owner, sector=sector, reference=reference
    )
    q = _own_filter(ctx, q, Opportunity.owner_organisation_id)
    async with ctx.db.read() as session:
        listed: Page[OpportunityPublic] = await paginate(session, q, page, order_by=NEWEST_FIRST, map=to_public)
    return listed


def anonymous_view(o: Opportunity, names: NamePatterns) -> OpportunityAnonymous:
    """The public, anonymised view of an opportunity."""
    return OpportunityAnonymous(
        id=o.id,
        opportunity_type=o.opportunity_type,
        title=anonymise_text(o.title, names),
        summary=anonymise_text(o.summary, names),
        keywords=anonymise_list(o.keywords, names),
        technology_fields=anonymise_list(o.technology_fields, names),
        market_fields=anonymise_list(o.market_fields, names),
        sectors=o.sectors,
        development_stage=o.development_stage,
        country=o.country,
        topic_code=o.topic_code,
        role_sought=o.role_sought,
        deadline=o.deadline,
        expires_on=o.expires_on,
    )


async def list_public(
    ctx: Ctx, page: PageParams, *, opportunity_type: str | None = None, sector: str | None = None
) -> Page[OpportunityAnonymous]:
    """Published (active, not expired) opportunities, anonymised."""
    q = opportunity_query(
        opportunity_type=opportunity_type,
        status=OpportunityStatus.ACTIVE.value,
        owner=None,
        sector=sector,
        reference=None,
    ).where(Opportunity.expires_on >= today())
    async with ctx.db.read() as session:
        names = await org_names(ctx, session)
        listed: Page[OpportunityAnonymous] = await paginate(
            session, q, page, order_by=NEWEST_FIRST, map=lambda o: anonymous_view(o, names)
        )
    return listed


async def get_public(ctx: Ctx, opportunity_id: str) -> OpportunityAnonymous:
    """One published opportunity, anonymised (an expired one is not public)."""
    async with ctx.db.read() as session:
        o = await get_opportunity_row(session, opportunity_id)
        if o.status != OpportunityStatus.ACTIVE or o.expires_on < today():
            raise NotFound(f"opportunity {opportunity_id} is not published")
        return anonymous_view(o, await org_names(ctx, session))
