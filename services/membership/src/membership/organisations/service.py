"""Use cases of the register: enter, read, list and change organisations (each one unit of work)."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from pydantic import ValidationError

from distretto_shared.contracts import membership as contracts
from distretto_shared.conventions import paginate
from distretto_shared.outbox import add_event
from distretto_shared.web import Conflict, Invalid, Page, PageParams, make_page
from membership.common import Ctx, validation_message
from membership.figures import repository as figures_repository
from membership.figures.domain import size_class_for
from membership.figures.models import YearlyFigures, figures_public
from membership.lifecycle.domain import MembershipStatus, allowed_actions
from membership.organisations import repository
from membership.organisations.domain import PRIVATE_ORGANISATION_FIELDS, OrganisationOrder
from membership.organisations.models import (
    Organisation,
    OrganisationCreate,
    OrganisationPublic,
    OrganisationUpdate,
)
from membership.organisations.repository import OrganisationFilter
from membership.tables import as_utc, fields, utcnow


def profile(org: Organisation) -> contracts.OrganisationProfile:
    """The organisation as the shared topic carries it (the register's public data)."""
    return contracts.OrganisationProfile(
        organisation_id=org.id,
        name=org.name,
        kind=str(org.kind),
        sectors=[str(s) for s in org.sectors],
        vat_number=org.vat_number,
        country=org.country,
        province=org.province,
        city=org.city,
        website=org.website,
        ateco_code=org.ateco_code,
        description=org.description,
        competences=list(org.competences),
        keywords=list(org.keywords),
        status=str(org.status),
        size_class=str(org.size_class) if org.size_class else None,
    )


def organisation_public(ctx: Ctx, org: Organisation, latest: YearlyFigures | None = None) -> OrganisationPublic:
    """The organisation as ``ctx``'s caller may see it: in full for itself and staff, else the
    register's public fields (no figures, size class, fee plan, renewal date or open actions)."""
    return public_of(ctx, fields(org), latest)


def public_of(ctx: Ctx, org: Mapping[Any, Any], latest: YearlyFigures | None = None) -> OrganisationPublic:
    """:func:`organisation_public` of the organisation's fields (its ORM object's, or its row's)."""
    times = {
        "status_changed_at": as_utc(org["status_changed_at"]),
        "created_at": as_utc(org["created_at"]),
        "updated_at": as_utc(org["updated_at"]),
    }
    if not ctx.acts_for(org["id"]):
        public = {name: value for name, value in org.items() if name not in PRIVATE_ORGANISATION_FIELDS}
        return OrganisationPublic.model_validate({**public, **times})
    return OrganisationPublic.model_validate(
        {
            **org,
            **times,
            "latest_figures": figures_public(latest, org["kind"]) if latest else None,
            "allowed_actions": allowed_actions(MembershipStatus(org["status"])),
        }
    )


async def create_organisation(ctx: Ctx, data: OrganisationCreate) -> OrganisationPublic:
    """Enter an organisation in the register as an applicant."""
    ctx.require_staff("register an organisation")
    org = Organisation.model_validate(data.model_dump())
    # Core unit of work: the same statements as an ORM session's flush, without the session.
    async with ctx.db.core_transaction() as uow:
        holder = await repository.vat_holder_row(uow, data.vat_number)
        if holder:
            raise Conflict(f"VAT number {data.vat_number} is already registered to {holder['name']!r} ({holder['id']})")
        await repository.insert(uow, org)
        add_event(
            uow, contracts.OrganisationRegistered(organisation_id=org.id, profile=profile(org)), source=ctx.source
        )
    return organisation_public(ctx, org)


async def get_organisation(ctx: Ctx, organisation_id: str) -> OrganisationPublic:
    """One organisation with its latest figures."""
    # Core on a plain connection: the row becomes the answer, no session or ORM object on the way.
    async with ctx.db.core_read() as conn:
        org = await repository.visible_row(ctx, conn, organisation_id)
        return public_of(ctx, org, await figures_repository.latest_on(conn, org))


async def list_organisations(
    ctx: Ctx,
    flt: OrganisationFilter,
    page: PageParams,
    order: OrganisationOrder = OrganisationOrder.name,
) -> Page[OrganisationPublic]:
    """One page of the register in the given order (others' applications left out)."""
    async with ctx.db.read() as session:
        rows: Page[Organisation] = await paginate(
            session, repository.register_query(ctx, flt), page, order_by=repository.order_by(order)
        )
        latest = await figures_repository.latest_of(session, rows.items)
    return make_page([organisation_public(ctx, o, latest.get(o.id)) for o in rows.items], rows.total, page)


async def update_organisation(ctx: Ctx, organisation_id: str, patch: OrganisationUpdate) -> OrganisationPublic:
    """Change an organisation's data; publishes OrganisationUpdated only when something changed."""
    changes = patch.model_dump(exclude_unset=True)
    async with ctx.db.transaction() as session:
        org = await repository.own(ctx, session, organisation_id, "change this organisation")
        current = fields(org, OrganisationCreate.model_fields)
        try:
            # Re-validate the whole record: a new country changes what a valid VAT number is.
            merged = OrganisationCreate.model_validate({**current, **changes})
        except ValidationError as exc:
            raise Invalid(validation_message(exc)) from exc
        new = merged.model_dump(mode="json")
        if new == OrganisationCreate.model_validate(current).model_dump(mode="json"):
            return organisation_public(ctx, org, await figures_repository.latest(session, org))
        holder = await repository.vat_holder(session, merged.vat_number, exclude_id=org.id)
        if holder:
            raise Conflict(f"VAT number {merged.vat_number} is already registered to {holder.name!r} ({holder.id})")
        for name, value in new.items():
            setattr(org, name, value)
        latest = await figures_repository.latest(session, org)
        org.size_class = size_class_for(org.kind, latest)
        org.updated_at = utcnow()
        add_event(
            session, contracts.OrganisationUpdated(organisation_id=org.id, profile=profile(org)), source=ctx.source
        )
    return organisation_public(ctx, org, latest)
