"""The platform's events → the console's activity feed (its own consumer group; effects only in its database).

Each row says what happened in a few parameters, put into words in the reader's
language when shown; the district figures' row carries the new figures, which the
home page's charts take over live.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy.ext.asyncio import AsyncSession

from console.config import Settings
from console.models import Activity, utcnow
from distretto_shared.consumer import Consumers
from distretto_shared.context import Context
from distretto_shared.contracts import matchmaking as mm
from distretto_shared.contracts import membership as ms
from distretto_shared.contracts import newsletter as nl
from distretto_shared.contracts import projects as pj
from distretto_shared.events import EventMeta

Ctx = Context[Settings]

consumers = Consumers("console-activity")


def _when(meta: EventMeta) -> datetime:
    try:
        at = datetime.fromisoformat((meta.time or "").replace("Z", "+00:00"))
    except ValueError:
        return utcnow()
    return at if at.tzinfo else at.replace(tzinfo=UTC)


def _add(session: AsyncSession, kind: str, subject: str, audience: str, meta: EventMeta, **params: Any) -> None:
    session.add(Activity(at=_when(meta), kind=kind, subject=subject[:64], audience=audience, params=params))


@consumers.handles(
    ms.OrganisationRegistered,
    ms.OrganisationJoined,
    ms.OrganisationSuspended,
    ms.OrganisationLapsed,
    ms.OrganisationLeft,
    ms.OrganisationRejected,
)
async def on_organisation(ctx: Ctx, session: AsyncSession, event: Any, meta: EventMeta) -> None:
    name = getattr(getattr(event, "profile", None), "name", None)
    if name is None:  # events without the profile: the name is the one the feed saw last
        name = await _known_name(session, event.organisation_id)
    kinds: dict[type, str] = {
        ms.OrganisationRegistered: "organisation.registered",
        ms.OrganisationJoined: "organisation.joined" if getattr(event, "first_join", True) else "organisation.rejoined",
        ms.OrganisationSuspended: "organisation.suspended",
        ms.OrganisationLapsed: "organisation.lapsed",
        ms.OrganisationLeft: "organisation.left",
        ms.OrganisationRejected: "organisation.rejected",
    }
    kind = kinds[type(event)]
    audience = "public" if kind in ("organisation.joined", "organisation.rejoined", "organisation.left") else "staff"
    _add(session, kind, event.organisation_id, audience, meta, name=name or "?")


async def _known_name(session: AsyncSession, organisation_id: str) -> str | None:
    from sqlmodel import col, select

    rows = await session.execute(
        select(Activity.params)
        .where(col(Activity.subject) == organisation_id, col(Activity.kind).like("organisation.%"))
        .order_by(col(Activity.id).desc())
        .limit(1)
    )
    found = rows.scalar_one_or_none()
    return found.get("name") if isinstance(found, dict) else None


@consumers.handles(ms.DistrictFiguresChanged)
async def on_figures(ctx: Ctx, session: AsyncSession, event: ms.DistrictFiguresChanged, meta: EventMeta) -> None:
    figures = event.model_dump(mode="json", exclude={"district"})
    _add(session, "figures.changed", "district", "public", meta, members=event.members_total, figures=figures)


@consumers.handles(pj.ProjectRegistered)
async def on_project(ctx: Ctx, session: AsyncSession, event: pj.ProjectRegistered, meta: EventMeta) -> None:
    acronym = event.project.acronym
    _add(session, "project.registered", event.project_id, "staff", meta, acronym=acronym)


@consumers.handles(pj.DeliverableSubmitted, pj.DeliverableDueSoon, pj.DeliverableOverdue)
async def on_deliverable(ctx: Ctx, session: AsyncSession, event: Any, meta: EventMeta) -> None:
    kinds: dict[type, str] = {
        pj.DeliverableSubmitted: "deliverable.submitted",
        pj.DeliverableDueSoon: "deliverable.due_soon",
        pj.DeliverableOverdue: "deliverable.overdue",
    }
    kind = kinds[type(event)]
    _add(
        session,
        kind,
        event.project_id,
        "staff",
        meta,
        number=event.number,
        acronym=event.acronym,
        days=getattr(event, "days_left", None),
        project_id=event.project_id,
    )


@consumers.handles(pj.MilestoneReached)
async def on_milestone(ctx: Ctx, session: AsyncSession, event: pj.MilestoneReached, meta: EventMeta) -> None:
    _add(session, "milestone.reached", event.project_id, "staff", meta, number=event.number, acronym=event.acronym)


@consumers.handles(nl.CampaignStarted, nl.CampaignFinished)
async def on_campaign(ctx: Ctx, session: AsyncSession, event: Any, meta: EventMeta) -> None:
    if isinstance(event, nl.CampaignStarted):
        _add(
            session, "campaign.started", event.campaign_id, "staff", meta, name=event.name, recipients=event.recipients
        )
    else:
        _add(
            session,
            "campaign.finished",
            event.campaign_id,
            "staff",
            meta,
            status=event.status,
            sent=event.sent,
            failed=event.failed,
        )


@consumers.handles(mm.OpportunityPublished)
async def on_opportunity(ctx: Ctx, session: AsyncSession, event: mm.OpportunityPublished, meta: EventMeta) -> None:
    _add(session, "opportunity.published", event.opportunity_id, "staff", meta, title=getattr(event, "title", ""))


@consumers.handles(mm.MatchProposed, mm.MatchAccepted, mm.MatchDeclined, mm.MeetingScheduled, mm.MeetingHeld)
async def on_match(ctx: Ctx, session: AsyncSession, event: Any, meta: EventMeta) -> None:
    kinds: dict[type, str] = {
        mm.MatchProposed: "match.proposed",
        mm.MatchAccepted: "match.accepted",
        mm.MatchDeclined: "match.declined",
        mm.MeetingScheduled: "meeting.scheduled",
        mm.MeetingHeld: "meeting.held",
    }
    kind = kinds[type(event)]
    _add(session, kind, event.match_id, "staff", meta)
