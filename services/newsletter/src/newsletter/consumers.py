"""Event handlers: membership, projects and matchmaking events → newsletter use cases."""

from __future__ import annotations

from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from distretto_shared.consumer import Consumers
from distretto_shared.context import Context
from distretto_shared.contracts import matchmaking, membership, projects
from distretto_shared.db import preload
from distretto_shared.events import EventMeta
from newsletter import audience
from newsletter.bounces.models import Suppression
from newsletter.config import Settings
from newsletter.digest import service as digest
from newsletter.members import service as members
from newsletter.members.models import MemberContact

Ctx = Context[Settings]

consumers = Consumers("newsletter-automation")


@consumers.handles_batch(membership.ContactAdded, membership.ContactUpdated)
async def on_contacts(ctx: Ctx, session: AsyncSession, batch: list[tuple[Any, EventMeta]]) -> None:
    """Contacts added or changed (``ContactReference``: no personal data), in order; the contacts and
    suppressions already kept are loaded with one query each first."""
    refs = [event.contact for event, _meta in batch]
    await preload(session, MemberContact, [ref.contact_id for ref in refs])
    await preload(session, Suppression, [ref.email_sha256 for ref in refs])
    for ref in refs:
        await members.contact_changed(session, ctx, ref)


@consumers.handles(membership.ContactErased)
async def on_contact_erased(ctx: Ctx, session: AsyncSession, event: membership.ContactErased, meta: EventMeta) -> None:
    await members.contact_erased(session, ctx, event.contact_id, event.email_sha256.lower())


@audience.consumers.handles(membership.OrganisationJoined)
async def on_joined(ctx: Ctx, session: AsyncSession, event: membership.OrganisationJoined, meta: EventMeta) -> None:
    """In the audience's group, after the joined profile is in the audience read model: the welcome mail
    chooses its recipients by segment, which must see the organisation as it is at this event."""
    await audience.profile_seen(session, event.profile, status="active")
    await members.organisation_joined(session, ctx, event)


@consumers.handles(projects.ProjectRegistered)
async def on_project(ctx: Ctx, session: AsyncSession, event: projects.ProjectRegistered, meta: EventMeta) -> None:
    p = event.project
    await digest.add_digest_item(
        session,
        kind="project",
        ref=f"project:{event.project_id}",
        title=f"{p.acronym}: {p.title}",
        detail=", ".join(p.thematic_areas),
        occurred_on=p.start_date,
    )


@consumers.handles(projects.MilestoneReached)
async def on_milestone(ctx: Ctx, session: AsyncSession, event: projects.MilestoneReached, meta: EventMeta) -> None:
    await digest.add_digest_item(
        session,
        kind="milestone",
        ref=f"milestone:{event.milestone_id}",
        title=f"{event.acronym or event.project_id} {event.number}: {event.title}",
        detail=f"reached on {event.reached_on.isoformat()}",
        occurred_on=event.reached_on,
    )


@consumers.handles(projects.DeliverableDueSoon, projects.DeliverableOverdue)
async def on_deadline(ctx: Ctx, session: AsyncSession, event: Any, meta: EventMeta) -> None:
    overdue = isinstance(event, projects.DeliverableOverdue)
    await digest.add_digest_item(
        session,
        kind="deadline",
        ref=f"deliverable:{event.deliverable_id}:{'overdue' if overdue else event.horizon_days}",
        title=f"{event.acronym or event.project_id} {event.number}: {event.title}",
        detail=(f"overdue by {event.days_late} days" if overdue else f"due on {event.due_date.isoformat()}"),
        occurred_on=event.due_date,
    )


@consumers.handles(matchmaking.OpportunityPublished)
async def on_opportunity(
    ctx: Ctx, session: AsyncSession, event: matchmaking.OpportunityPublished, meta: EventMeta
) -> None:
    await digest.add_digest_item(
        session,
        kind="opportunity",
        ref=f"opportunity:{event.opportunity_id}",
        title=event.title,
        detail=f"{event.opportunity_type.replace('_', ' ')}" + (f" — {event.summary[:200]}" if event.summary else ""),
        occurred_on=None,
        sectors=event.sectors,
    )
