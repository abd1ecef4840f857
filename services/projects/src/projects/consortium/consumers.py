"""Handlers of the membership service's organisation events: event → service call.

They keep this service's read model of member organisations and link the
consortium participants that are members (by VAT number or normalised name),
whichever arrives first: a participant added before its organisation is
linked when the organisation's event comes; one added after is linked at once.
"""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from distretto_shared.consumer import Consumers
from distretto_shared.contracts import membership as m
from distretto_shared.db import preload
from distretto_shared.events import EventMeta, PermanentEventError
from projects.consortium import service
from projects.consortium.models import MemberOrganisation
from projects.unit import Ctx

consumers = Consumers("projects-organisations")
ProfileEvent = m.OrganisationRegistered | m.OrganisationUpdated | m.OrganisationJoined


@consumers.handles_batch(m.OrganisationRegistered, m.OrganisationUpdated, m.OrganisationJoined)
async def on_profiles(ctx: Ctx, session: AsyncSession, batch: list[tuple[ProfileEvent, EventMeta]]) -> None:
    """A batch of profiles: the organisations already kept are loaded with one query, then each event
    is applied in order."""
    await preload(session, MemberOrganisation, [event.profile.organisation_id for event, _ in batch])
    for event, meta in batch:
        await on_profile(ctx, session, event, meta)


async def on_profile(ctx: Ctx, session: AsyncSession, event: ProfileEvent, meta: EventMeta) -> None:
    """An organisation's profile: keep it and link the participants it matches."""
    profile = event.profile
    if event.organisation_id != profile.organisation_id:
        raise PermanentEventError("organisation_id differs from profile.organisation_id")
    if isinstance(event, m.OrganisationJoined):
        profile = profile.model_copy(update={"status": "active"})
    await service.record_organisation(session, profile)


@consumers.handles_batch(*m.STATUS_EVENTS)
async def on_status(ctx: Ctx, session: AsyncSession, batch: list[tuple[m.StatusEvent, EventMeta]]) -> None:
    """Membership status changes: kept; an organisation that left or was rejected is unlinked."""
    await preload(session, MemberOrganisation, [event.organisation_id for event, _ in batch])
    for event, _meta in batch:
        await service.record_organisation_status(session, event.organisation_id, event.new_status)
