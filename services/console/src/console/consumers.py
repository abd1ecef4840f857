"""The platform's events → the console's activity feed (its own consumer group; effects only in its database).

Each row says what happened in a few parameters, put into words in the reader's
language when shown; the district figures' row carries the new figures, which the
home page's charts take over live. One batch handler takes every event type: a fetched batch
becomes its rows with one ``INSERT`` (the district figures arrive seldom, the organisations' and
projects' events in bursts — an import, a replay, a consumer catching up). Its statements are Core
only, so it runs in the backbone's Core unit of work (``handles_batch(core=True)``): the inbox claim,
the rows and the commit on one connection, without an ORM session.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import insert

from console.config import Settings
from console.models import Activity, utcnow
from distretto_shared.consumer import Consumers
from distretto_shared.context import Context
from distretto_shared.contracts import matchmaking as mm
from distretto_shared.contracts import membership as ms
from distretto_shared.contracts import newsletter as nl
from distretto_shared.contracts import projects as pj
from distretto_shared.db import CoreUnitOfWork
from distretto_shared.events import Event, EventMeta

Ctx = Context[Settings]

consumers = Consumers("console-activity")


def _when(meta: EventMeta) -> datetime:
    try:
        at = datetime.fromisoformat((meta.time or "").replace("Z", "+00:00"))
    except ValueError:
        return utcnow()
    return at if at.tzinfo else at.replace(tzinfo=UTC)


Row = dict[str, Any]
"""An ``activity`` row's values, written with the rest of its batch by one ``INSERT``."""


def _row(kind: str, subject: str, audience: str, meta: EventMeta, **params: Any) -> Row:
    return {"at": _when(meta), "kind": kind, "subject": subject[:64], "audience": audience, "params": params}


_ORGANISATION: tuple[type[Event], ...] = (
    ms.OrganisationRegistered,
    ms.OrganisationJoined,
    ms.OrganisationSuspended,
    ms.OrganisationLapsed,
    ms.OrganisationLeft,
    ms.OrganisationRejected,
)
_ORGANISATION_KINDS: dict[type[Event], str] = {
    ms.OrganisationRegistered: "organisation.registered",
    ms.OrganisationSuspended: "organisation.suspended",
    ms.OrganisationLapsed: "organisation.lapsed",
    ms.OrganisationLeft: "organisation.left",
    ms.OrganisationRejected: "organisation.rejected",
}
_DELIVERABLE_KINDS: dict[type[Event], str] = {
    pj.DeliverableSubmitted: "deliverable.submitted",
    pj.DeliverableDueSoon: "deliverable.due_soon",
    pj.DeliverableOverdue: "deliverable.overdue",
}
_MATCH_KINDS: dict[type[Event], str] = {
    mm.MatchProposed: "match.proposed",
    mm.MatchAccepted: "match.accepted",
    mm.MatchDeclined: "match.declined",
    mm.MeetingScheduled: "meeting.scheduled",
    mm.MeetingHeld: "meeting.held",
}


@consumers.handles_batch(
    *_ORGANISATION,
    ms.DistrictFiguresChanged,
    pj.ProjectRegistered,
    *_DELIVERABLE_KINDS,
    pj.MilestoneReached,
    nl.CampaignStarted,
    nl.CampaignFinished,
    mm.OpportunityPublished,
    *_MATCH_KINDS,
    core=True,
)
async def on_events(ctx: Ctx, session: CoreUnitOfWork, batch: list[tuple[Any, EventMeta]]) -> None:
    """A fetched batch of platform events → its ``activity`` rows, in order, with one ``INSERT``."""
    names: dict[str, str] = {}  # organisation id → the last name this batch told
    rows: list[Row] = []
    for event, meta in batch:
        if isinstance(event, _ORGANISATION):
            rows.append(await _organisation(session, event, meta, names))
        else:
            rows.append(_other(event, meta))
    await session.execute(insert(Activity.__table__), rows)  # type: ignore[attr-defined]


async def _organisation(session: CoreUnitOfWork, event: Any, meta: EventMeta, names: dict[str, str]) -> Row:
    name = getattr(getattr(event, "profile", None), "name", None)
    if name is None:  # events without the profile: the name is the one the feed saw last
        name = names.get(event.organisation_id) or await _known_name(session, event.organisation_id)
    if name:
        names[event.organisation_id] = name
    if isinstance(event, ms.OrganisationJoined):
        kind = "organisation.joined" if event.first_join else "organisation.rejoined"
    else:
        kind = _ORGANISATION_KINDS[type(event)]
    audience = "public" if kind in ("organisation.joined", "organisation.rejoined", "organisation.left") else "staff"
    return _row(kind, event.organisation_id, audience, meta, name=name or "?")


async def _known_name(session: CoreUnitOfWork, organisation_id: str) -> str | None:
    from sqlmodel import col, select

    rows = await session.execute(
        select(Activity.params)
        .where(col(Activity.subject) == organisation_id, col(Activity.kind).like("organisation.%"))
        .order_by(col(Activity.id).desc())
        .limit(1)
    )
    found = rows.scalar_one_or_none()
    return found.get("name") if isinstance(found, dict) else None


def _other(event: Any, meta: EventMeta) -> Row:
    """The row of an event that needs nothing but itself."""
    if isinstance(event, ms.DistrictFiguresChanged):
        figures = event.model_dump(mode="json", exclude={"district"})
        return _row("figures.changed", "district", "public", meta, members=event.members_total, figures=figures)
    if isinstance(event, pj.ProjectRegistered):
        return _row("project.registered", event.project_id, "staff", meta, acronym=event.project.acronym)
    if type(event) in _DELIVERABLE_KINDS:
        return _row(
            _DELIVERABLE_KINDS[type(event)],
            event.project_id,
            "staff",
            meta,
            number=event.number,
            acronym=event.acronym,
            days=getattr(event, "days_left", None),
            project_id=event.project_id,
        )
    if isinstance(event, pj.MilestoneReached):
        return _row("milestone.reached", event.project_id, "staff", meta, number=event.number, acronym=event.acronym)
    if isinstance(event, nl.CampaignStarted):
        return _row("campaign.started", event.campaign_id, "staff", meta, name=event.name, recipients=event.recipients)
    if isinstance(event, nl.CampaignFinished):
        return _row(
            "campaign.finished",
            event.campaign_id,
            "staff",
            meta,
            status=event.status,
            sent=event.sent,
            failed=event.failed,
        )
    if isinstance(event, mm.OpportunityPublished):
        return _row("opportunity.published", event.opportunity_id, "staff", meta, title=getattr(event, "title", ""))
    return _row(_MATCH_KINDS[type(event)], event.match_id, "staff", meta)
