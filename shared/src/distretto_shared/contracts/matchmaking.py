"""Events published by the matchmaking service."""

from __future__ import annotations

from datetime import date, datetime

from distretto_shared.events import Event
from distretto_shared.topics import TopicSpec, register

OPPORTUNITY_TOPIC = TopicSpec("matchmaking.opportunity.v1", partitions=3)
MATCH_TOPIC = TopicSpec("matchmaking.match.v1", partitions=3)
register(OPPORTUNITY_TOPIC, MATCH_TOPIC)


class _OpportunityEvent(Event):
    topic = OPPORTUNITY_TOPIC.name
    subject_field = "opportunity_id"

    opportunity_id: str


class OpportunityPublished(_OpportunityEvent):
    """An opportunity was published (its public, anonymised view)."""

    event_type = "distretto.matchmaking.opportunity.published.v1"
    opportunity_type: str
    """technology_offer, technology_request, rd_request, business_offer, business_request, partner_search"""
    title: str
    summary: str = ""
    keywords: list[str] = []
    sectors: list[str] = []
    country: str | None = None
    expires_on: date | None = None
    owner_organisation_id: str | None = None
    topic_code: str | None = None


class OpportunityRenewed(_OpportunityEvent):
    """An opportunity's expiry was extended."""

    event_type = "distretto.matchmaking.opportunity.renewed.v1"
    expires_on: date


class OpportunityExpired(_OpportunityEvent):
    """An opportunity expired."""

    event_type = "distretto.matchmaking.opportunity.expired.v1"


class OpportunityWithdrawn(_OpportunityEvent):
    """Its owner (or the foundation's staff) withdrew an opportunity before it expired."""

    event_type = "distretto.matchmaking.opportunity.withdrawn.v1"


class _MatchEvent(Event):
    topic = MATCH_TOPIC.name
    subject_field = "match_id"

    match_id: str


class MatchProposed(_MatchEvent):
    """The engine proposed a match."""

    event_type = "distretto.matchmaking.match.proposed.v1"
    opportunity_id: str
    counterpart_type: str
    """opportunity or profile"""
    counterpart_id: str
    score: float


class MatchAccepted(_MatchEvent):
    """One side accepted the match."""

    event_type = "distretto.matchmaking.match.accepted.v1"
    side: str


class MatchDeclined(_MatchEvent):
    """One side declined the match."""

    event_type = "distretto.matchmaking.match.declined.v1"
    side: str


class MeetingScheduled(_MatchEvent):
    """A meeting was scheduled for the match."""

    event_type = "distretto.matchmaking.meeting.scheduled.v1"
    scheduled_at: datetime


class MeetingHeld(_MatchEvent):
    """The meeting took place."""

    event_type = "distretto.matchmaking.meeting.held.v1"
    held_on: date
