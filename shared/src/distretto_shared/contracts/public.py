"""The public catalogue: events for partner systems, projected by the partners service.

Every public type is a curated, versioned view of internal events with nothing personal in it:
organisations (name, kind, sectors, province, size class — never people), the district's
aggregate figures, projects (CORDIS-public fields), opportunities (the anonymised view that
matchmaking publishes, without the owner). Partners receive them on Kafka topics
``public.<aggregate>.v1``, as server-sent events and as webhooks, with the same CloudEvents id
on every channel.

Rules for adding a type: only organisations, aggregates and public records as subjects; no
field that could hold a person's name, e-mail address, phone number or postal address
(``tests/backbone/test_public_catalogue.py`` checks field names and planted values).
"""

from __future__ import annotations

from datetime import date, datetime

from distretto_shared.events import Event
from distretto_shared.topics import TopicSpec, register

PUBLIC_ORGANISATION_TOPIC = TopicSpec("public.organisation.v1", partitions=3, retention_ms=-1)
PUBLIC_FIGURES_TOPIC = TopicSpec("public.figures.v1", partitions=1, retention_ms=-1)
PUBLIC_PROJECT_TOPIC = TopicSpec("public.project.v1", partitions=3, retention_ms=-1)
PUBLIC_OPPORTUNITY_TOPIC = TopicSpec("public.opportunity.v1", partitions=3, retention_ms=-1)
PUBLIC_NEWSLETTER_TOPIC = TopicSpec("public.newsletter.v1", partitions=1, retention_ms=-1)
PUBLIC_TOPICS = (
    PUBLIC_ORGANISATION_TOPIC,
    PUBLIC_FIGURES_TOPIC,
    PUBLIC_PROJECT_TOPIC,
    PUBLIC_OPPORTUNITY_TOPIC,
    PUBLIC_NEWSLETTER_TOPIC,
)
register(*PUBLIC_TOPICS)


class PublicEvent(Event):
    """Base of the public types (the catalogue is ``PUBLIC_TYPES``)."""


class _Organisation(PublicEvent):
    topic = PUBLIC_ORGANISATION_TOPIC.name
    subject_field = "organisation_id"

    organisation_id: str
    name: str
    """The organisation's registered name (a legal entity, never a person)."""
    kind: str
    """company, university, research_institute, hospital, health_authority, foundation, other"""
    sectors: list[str] = []
    province: str | None = None
    size_class: str | None = None
    """micro, small, medium, large (EU 2003/361/EC)"""


class OrganisationJoined(_Organisation):
    """An organisation became a member of the district (or came back)."""

    event_type = "distretto.public.organisation.joined.v1"
    joined_on: date
    first_join: bool = True


class OrganisationLeft(_Organisation):
    """A member organisation left the district (no reason: it may be personal)."""

    event_type = "distretto.public.organisation.left.v1"


class OrganisationChanged(_Organisation):
    """A member's public profile changed (kind, sectors, name, province or size class)."""

    event_type = "distretto.public.organisation.changed.v1"
    changed: list[str] = []
    """The names of the fields that changed."""


class DistrictFiguresChanged(PublicEvent):
    """The district's aggregate figures changed (the same numbers as the public figures page)."""

    event_type = "distretto.public.figures.changed.v1"
    topic = PUBLIC_FIGURES_TOPIC.name
    subject_field = "district"

    district: str = "district"
    computed_at: datetime
    year: int | None = None
    members_total: int
    by_kind: dict[str, int] = {}
    by_sector: dict[str, int] = {}
    by_size_class: dict[str, int] = {}
    companies: int = 0
    staff: int = 0
    rd_staff: int = 0
    turnover_eur: float = 0
    lab_m2: float = 0
    patents: int = 0


class _Project(PublicEvent):
    topic = PUBLIC_PROJECT_TOPIC.name
    subject_field = "project_id"

    project_id: str
    acronym: str = ""


class ProjectRegistered(_Project):
    """A project of the district was registered (CORDIS-public fields). The objective is left out:
    a free text of any length may name people, and no filter finds every name."""

    event_type = "distretto.public.project.registered.v1"
    title: str
    status: str
    framework_programme: str | None = None
    funding_scheme: str | None = None
    topics: list[str] = []
    keywords: list[str] = []
    start_date: date | None = None
    end_date: date | None = None
    member_organisation_ids: list[str] = []
    """Member organisations in the consortium (organisations, public on CORDIS)."""


class ProjectStatusChanged(_Project):
    """A project's status changed (SIGNED, CLOSED, TERMINATED or planned/ongoing)."""

    event_type = "distretto.public.project.status_changed.v1"
    old_status: str
    new_status: str


class DeliverableSubmitted(_Project):
    """A project's deliverable was submitted."""

    event_type = "distretto.public.project.deliverable_submitted.v1"
    deliverable_id: str
    number: str
    title: str
    due_date: date
    submitted_on: date


class _Opportunity(PublicEvent):
    topic = PUBLIC_OPPORTUNITY_TOPIC.name
    subject_field = "opportunity_id"

    opportunity_id: str


class OpportunityPublished(_Opportunity):
    """An opportunity was published: the anonymised view, without its owner."""

    event_type = "distretto.public.opportunity.published.v1"
    opportunity_type: str
    title: str
    summary: str = ""
    keywords: list[str] = []
    sectors: list[str] = []
    country: str | None = None
    expires_on: date | None = None
    topic_code: str | None = None


class OpportunityWithdrawn(_Opportunity):
    """An opportunity is no longer offered: it expired, or its owner withdrew it."""

    event_type = "distretto.public.opportunity.withdrawn.v1"
    reason: str = "expired"
    """``expired`` or ``withdrawn`` (by its owner)"""


class CampaignPublished(PublicEvent):
    """A newsletter issue of the foundation went out: its subject and its public web version.
    Only campaigns given a web version are announced; nothing about recipients."""

    event_type = "distretto.public.newsletter.campaign_published.v1"
    topic = PUBLIC_NEWSLETTER_TOPIC.name
    subject_field = "campaign_id"

    campaign_id: str
    subject_line: str
    """Rendered without any subscriber's fields."""
    web_url: str
    published_at: datetime | None = None


PUBLIC_TYPES: tuple[type[PublicEvent], ...] = (
    OrganisationJoined,
    OrganisationLeft,
    OrganisationChanged,
    DistrictFiguresChanged,
    ProjectRegistered,
    ProjectStatusChanged,
    DeliverableSubmitted,
    OpportunityPublished,
    OpportunityWithdrawn,
    CampaignPublished,
)
"""Every public event type, in catalogue order."""

PUBLIC_TYPE_NAMES: tuple[str, ...] = tuple(t.event_type for t in PUBLIC_TYPES)
