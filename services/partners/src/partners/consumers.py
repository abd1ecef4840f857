"""The projector: internal events in, public events out (group ``partners.partners-projector``).

Whitelisting, not filtering: each public event is built field by field from the internal one,
so a field added to an internal contract never reaches partners unless it is added here.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from distretto_shared.consumer import Consumers
from distretto_shared.context import Context
from distretto_shared.contracts import matchmaking as mm
from distretto_shared.contracts import membership as ms
from distretto_shared.contracts import newsletter as nl
from distretto_shared.contracts import projects as pj
from distretto_shared.contracts import public as pub
from distretto_shared.events import EventMeta
from partners import domain
from partners.log import publish_public
from partners.models import OrganisationView, ProjectView
from partners.service import erase_contact_address

consumers = Consumers("partners-projector")

erasure = Consumers("partners-erasure")
"""A person erased in membership (GDPR) loses what partners holds of them: a contact address."""


def _view_fields(view: OrganisationView) -> dict[str, object]:
    return {
        "organisation_id": view.organisation_id,
        "name": view.name,
        "kind": view.kind,
        "sectors": list(view.sectors),
        "province": view.province,
        "size_class": view.size_class,
    }


async def _remember(
    session: AsyncSession, profile: ms.OrganisationProfile
) -> tuple[OrganisationView, dict[str, object]]:
    """Update the organisation's view; returns it and its public fields before the change."""
    view = await session.get(OrganisationView, profile.organisation_id)
    fields = domain.organisation_fields(profile)
    if view is None:
        view = OrganisationView(status=profile.status, **fields)  # type: ignore[arg-type]
        before: dict[str, object] = {}
    else:
        before = _view_fields(view)
        for key, value in fields.items():
            setattr(view, key, value)
        view.status = profile.status
    session.add(view)
    return view, before


@consumers.handles(ms.OrganisationJoined)
async def on_joined(_ctx: Context[Any], session: AsyncSession, event: ms.OrganisationJoined, meta: EventMeta) -> None:
    view, _ = await _remember(session, event.profile)
    view.member = True
    fields = domain.organisation_fields(event.profile)
    await publish_public(
        session, pub.OrganisationJoined(**fields, joined_on=event.joined_on, first_join=event.first_join), meta.id
    )


@consumers.handles(ms.OrganisationRegistered, ms.OrganisationUpdated)
async def on_profile(
    _ctx: Context[Any],
    session: AsyncSession,
    event: ms.OrganisationRegistered | ms.OrganisationUpdated,
    meta: EventMeta,
) -> None:
    view, before = await _remember(session, event.profile)
    if not view.member or not before:
        return  # applicants are not public: only members' changes are
    after = domain.organisation_fields(event.profile)
    changed = domain.changed_fields(before, after)
    if changed:
        await publish_public(session, pub.OrganisationChanged(**after, changed=changed), meta.id)


@consumers.handles(ms.OrganisationLeft)
async def on_left(_ctx: Context[Any], session: AsyncSession, event: ms.OrganisationLeft, meta: EventMeta) -> None:
    view = await session.get(OrganisationView, event.organisation_id)
    if view is None or not view.member:
        return  # never a public member: nothing to announce
    view.member = False
    view.status = "left"
    session.add(view)
    await publish_public(session, pub.OrganisationLeft(**_view_fields(view)), meta.id)  # type: ignore[arg-type]


@consumers.handles(ms.DistrictFiguresChanged)
async def on_figures(
    _ctx: Context[Any], session: AsyncSession, event: ms.DistrictFiguresChanged, meta: EventMeta
) -> None:
    await publish_public(session, domain.figures_changed(event), meta.id)


@consumers.handles(pj.ProjectRegistered)
async def on_project(_ctx: Context[Any], session: AsyncSession, event: pj.ProjectRegistered, meta: EventMeta) -> None:
    await _remember_project(session, event.project_id, event.project.acronym)
    await publish_public(session, domain.project_registered(event.project), meta.id)


@consumers.handles(pj.ProjectUpdated)
async def on_project_updated(
    _ctx: Context[Any], session: AsyncSession, event: pj.ProjectUpdated, meta: EventMeta
) -> None:
    await _remember_project(session, event.project_id, event.project.acronym)


async def _remember_project(session: AsyncSession, project_id: str, acronym: str) -> None:
    view = await session.get(ProjectView, project_id)
    if view is None:
        view = ProjectView(project_id=project_id, acronym=acronym)
    view.acronym = acronym
    session.add(view)


@consumers.handles(pj.ProjectStatusChanged)
async def on_status(_ctx: Context[Any], session: AsyncSession, event: pj.ProjectStatusChanged, meta: EventMeta) -> None:
    view = await session.get(ProjectView, event.project_id)
    await publish_public(
        session,
        pub.ProjectStatusChanged(
            project_id=event.project_id,
            acronym=domain.scrub(view.acronym) if view else "",
            old_status=event.old_status,
            new_status=event.new_status,
        ),
        meta.id,
    )


@consumers.handles(pj.DeliverableSubmitted)
async def on_deliverable(
    _ctx: Context[Any], session: AsyncSession, event: pj.DeliverableSubmitted, meta: EventMeta
) -> None:
    view = await session.get(ProjectView, event.project_id)
    await publish_public(session, domain.deliverable_submitted(event, view.acronym if view else ""), meta.id)


@consumers.handles(mm.OpportunityPublished)
async def on_opportunity(
    _ctx: Context[Any], session: AsyncSession, event: mm.OpportunityPublished, meta: EventMeta
) -> None:
    await publish_public(session, domain.opportunity_published(event), meta.id)


@consumers.handles(mm.OpportunityExpired)
async def on_expired(_ctx: Context[Any], session: AsyncSession, event: mm.OpportunityExpired, meta: EventMeta) -> None:
    await publish_public(session, pub.OpportunityWithdrawn(opportunity_id=event.opportunity_id), meta.id)


@consumers.handles(mm.OpportunityWithdrawn)
async def on_withdrawn(
    _ctx: Context[Any], session: AsyncSession, event: mm.OpportunityWithdrawn, meta: EventMeta
) -> None:
    await publish_public(
        session, pub.OpportunityWithdrawn(opportunity_id=event.opportunity_id, reason="withdrawn"), meta.id
    )


@consumers.handles(nl.CampaignPublished)
async def on_campaign(_ctx: Context[Any], session: AsyncSession, event: nl.CampaignPublished, meta: EventMeta) -> None:
    await publish_public(session, domain.campaign_published(event), meta.id)


@erasure.handles(ms.ContactErased)
async def on_contact_erased(ctx: Context[Any], session: AsyncSession, event: ms.ContactErased, meta: EventMeta) -> None:
    await erase_contact_address(session, ctx.db, event.email_sha256.lower())
