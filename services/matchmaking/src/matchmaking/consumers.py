"""Event handlers: membership and projects events keep the competence profiles current."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from distretto_shared.consumer import Consumers
from distretto_shared.contracts import membership, projects
from distretto_shared.events import EventMeta
from matchmaking import service

consumers = Consumers("matchmaking-profiles")


@consumers.handles(membership.OrganisationRegistered, membership.OrganisationUpdated)
async def on_organisation(
    session: AsyncSession, event: membership.OrganisationRegistered | membership.OrganisationUpdated, meta: EventMeta
) -> None:
    await service.apply_organisation(session, event.profile)


@consumers.handles(membership.OrganisationJoined)
async def on_joined(session: AsyncSession, event: membership.OrganisationJoined, meta: EventMeta) -> None:
    await service.apply_organisation(session, event.profile, status="active")


@consumers.handles(
    membership.OrganisationSuspended,
    membership.OrganisationLapsed,
    membership.OrganisationLeft,
    membership.OrganisationRejected,
)
async def on_status(
    session: AsyncSession,
    event: membership.OrganisationSuspended
    | membership.OrganisationLapsed
    | membership.OrganisationLeft
    | membership.OrganisationRejected,
    meta: EventMeta,
) -> None:
    status = {
        membership.OrganisationSuspended: "suspended",
        membership.OrganisationLapsed: "lapsed",
        membership.OrganisationLeft: "left",
        membership.OrganisationRejected: "rejected",
    }[type(event)]
    await service.set_organisation_status(session, event.organisation_id, status)


@consumers.handles(projects.ProjectRegistered, projects.ProjectUpdated)
async def on_project(
    session: AsyncSession, event: projects.ProjectRegistered | projects.ProjectUpdated, meta: EventMeta
) -> None:
    await service.apply_project(session, event.project)


@consumers.handles(projects.ParticipantAdded, projects.ParticipantLinked)
async def on_participant(
    session: AsyncSession, event: projects.ParticipantAdded | projects.ParticipantLinked, meta: EventMeta
) -> None:
    if event.organisation_id:
        await service.add_participation(session, event.project_id, event.organisation_id)
