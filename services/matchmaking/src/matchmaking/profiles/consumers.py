"""Event handlers: membership and projects events keep the competence profiles current."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from distretto_shared.consumer import Consumers
from distretto_shared.contracts import membership, projects
from distretto_shared.conventions import canonical_id
from distretto_shared.db import preload
from distretto_shared.events import EventMeta
from matchmaking.common import Ctx
from matchmaking.profiles import service
from matchmaking.profiles.models import Organisation

consumers = Consumers("matchmaking-profiles")


ProfileEvent = membership.OrganisationRegistered | membership.OrganisationUpdated | membership.OrganisationJoined


@consumers.handles_batch(
    membership.OrganisationRegistered, membership.OrganisationUpdated, membership.OrganisationJoined
)
async def on_organisations(ctx: Ctx, session: AsyncSession, batch: list[tuple[ProfileEvent, EventMeta]]) -> None:
    """Organisations registered, changed or joined. Each event carries the whole profile and
    ``apply_organisation`` overwrites what was kept, so of several events for one organisation
    in a batch only the last is applied (one reindexing, not one per event): the same end state."""
    latest: dict[str, ProfileEvent] = {}
    for event, _meta in batch:
        org_id = canonical_id(event.profile.organisation_id)
        latest.pop(org_id, None)  # keep the order of the last events
        latest[org_id] = event
    await preload(session, Organisation, latest)
    for event in latest.values():
        status = "active" if isinstance(event, membership.OrganisationJoined) else None
        await service.apply_organisation(ctx, session, event.profile, status=status)


@consumers.handles(*membership.STATUS_EVENTS)
async def on_status(ctx: Ctx, session: AsyncSession, event: membership.StatusEvent, meta: EventMeta) -> None:
    await service.set_organisation_status(ctx, session, canonical_id(event.organisation_id), event.new_status)


@consumers.handles(projects.ProjectRegistered, projects.ProjectUpdated)
async def on_project(
    ctx: Ctx, session: AsyncSession, event: projects.ProjectRegistered | projects.ProjectUpdated, meta: EventMeta
) -> None:
    await service.apply_project(ctx, session, event.project)


@consumers.handles(projects.ParticipantAdded, projects.ParticipantLinked)
async def on_participant(
    ctx: Ctx, session: AsyncSession, event: projects.ParticipantAdded | projects.ParticipantLinked, meta: EventMeta
) -> None:
    if event.organisation_id:
        await service.add_participation(ctx, session, event.project_id, canonical_id(event.organisation_id))
