"""Event handlers: membership and projects events keep the competence profiles current."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from distretto_shared.consumer import Consumers
from distretto_shared.contracts import membership, projects
from distretto_shared.conventions import canonical_id
from distretto_shared.events import EventMeta
from matchmaking.common import Ctx
from matchmaking.profiles import service

consumers = Consumers("matchmaking-profiles")


@consumers.handles(membership.OrganisationRegistered, membership.OrganisationUpdated)
async def on_organisation(
    ctx: Ctx,
    session: AsyncSession,
    event: membership.OrganisationRegistered | membership.OrganisationUpdated,
    meta: EventMeta,
) -> None:
    await service.apply_organisation(ctx, session, event.profile)


@consumers.handles(membership.OrganisationJoined)
async def on_joined(ctx: Ctx, session: AsyncSession, event: membership.OrganisationJoined, meta: EventMeta) -> None:
    await service.apply_organisation(ctx, session, event.profile, status="active")


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
