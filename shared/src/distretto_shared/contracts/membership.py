"""Events published by the membership service."""

from __future__ import annotations

from datetime import date, datetime
from typing import ClassVar

from pydantic import BaseModel, ConfigDict

from distretto_shared.events import Event
from distretto_shared.topics import WEEK_MS, TopicSpec, register

ORGANISATION_TOPIC = TopicSpec("membership.organisation.v1", partitions=3, retention_ms=-1)
CONTACT_TOPIC = TopicSpec("membership.contact.v2", partitions=3, retention_ms=-1)
"""v2: ids, consents and the address's hash only. v1 (retired) carried names, emails and phones."""
RETIRED_CONTACT_TOPIC = "membership.contact.v1"
"""Deleted by membership when it connects to the broker: its records held personal data."""
FIGURES_TOPIC = TopicSpec("membership.figures.v1", partitions=1, retention_ms=52 * WEEK_MS, compacted=True)
register(ORGANISATION_TOPIC, CONTACT_TOPIC, FIGURES_TOPIC)


class OrganisationProfile(BaseModel):
    """What other services keep of an organisation (no personal data)."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    organisation_id: str
    name: str
    kind: str
    """company, university, research_institute, hospital, health_authority, foundation, other"""
    sectors: list[str] = []
    vat_number: str | None = None
    country: str = "IT"
    province: str | None = None
    city: str | None = None
    website: str | None = None
    ateco_code: str | None = None
    description: str = ""
    competences: list[str] = []
    keywords: list[str] = []
    status: str = "applied"
    """applied, active, rejected, suspended, lapsed, left"""
    size_class: str | None = None
    """micro, small, medium, large (EU 2003/361/EC), from the latest yearly figures"""


class _OrganisationEvent(Event):
    topic = ORGANISATION_TOPIC.name
    subject_field = "organisation_id"

    organisation_id: str


class OrganisationRegistered(_OrganisationEvent):
    """An organisation applied for membership (or was entered in the register)."""

    event_type = "distretto.membership.organisation.registered.v1"
    profile: OrganisationProfile


class OrganisationUpdated(_OrganisationEvent):
    """An organisation's data changed; carries the whole new profile."""

    event_type = "distretto.membership.organisation.updated.v1"
    profile: OrganisationProfile


class OrganisationJoined(_OrganisationEvent):
    """The membership became active (approved, reinstated or renewed after lapsing)."""

    event_type = "distretto.membership.organisation.joined.v1"
    profile: OrganisationProfile
    first_join: bool = True
    """False when an existing member came back from suspended or lapsed."""
    joined_on: date


class OrganisationSuspended(_OrganisationEvent):
    """The membership was suspended."""

    event_type = "distretto.membership.organisation.suspended.v1"
    new_status: ClassVar[str] = "suspended"
    reason: str = ""


class OrganisationLapsed(_OrganisationEvent):
    """The renewal is overdue past the grace period."""

    event_type = "distretto.membership.organisation.lapsed.v1"
    new_status: ClassVar[str] = "lapsed"
    renewal_due: date | None = None


class OrganisationRenewed(_OrganisationEvent):
    """A paid renewal was recorded: the membership now runs until ``renewal_due``.

    Published for every renewal, an active member's early one included (its status does not
    change, so no other event says its period was extended); a lapsed member that renews also
    gets an ``OrganisationJoined`` (``first_join`` false)."""

    event_type = "distretto.membership.organisation.renewed.v1"
    period_start: date
    period_end: date
    renewal_due: date
    """The new date the next renewal falls due (the end of the period paid for)."""
    paid_on: date
    reactivated: bool = False
    """True when the renewal brought a lapsed membership back."""


class OrganisationLeft(_OrganisationEvent):
    """The organisation left the cluster."""

    event_type = "distretto.membership.organisation.left.v1"
    new_status: ClassVar[str] = "left"
    reason: str = ""


class OrganisationRejected(_OrganisationEvent):
    """The application was rejected."""

    event_type = "distretto.membership.organisation.rejected.v1"
    new_status: ClassVar[str] = "rejected"
    reason: str = ""


StatusEvent = OrganisationSuspended | OrganisationLapsed | OrganisationLeft | OrganisationRejected
STATUS_EVENTS: tuple[type[StatusEvent], ...] = (
    OrganisationSuspended,
    OrganisationLapsed,
    OrganisationLeft,
    OrganisationRejected,
)
"""The events that only change an organisation's status; each names it in ``new_status``. (The
others carry the whole profile: ``OrganisationJoined`` makes it active.) A read model keeps the
status with ``@consumers.handles(*STATUS_EVENTS)`` and ``event.new_status``."""


class ContactReference(BaseModel):
    """A person of a member organisation as other services see it: ids, consents, language and
    the SHA-256 of the lower-cased email address (for matching and suppression). No name, email
    or phone: a service that needs them asks membership (``GET /contacts/{id}/personal-data``,
    allowed to ``service:newsletter`` and staff), so an erasure leaves nothing on a topic."""

    model_config = ConfigDict(extra="ignore", frozen=True)

    contact_id: str
    organisation_id: str
    email_sha256: str
    consent_newsletter: bool = False
    consent_data_processing: bool = False
    language: str = "it"


class _ContactEvent(Event):
    topic = CONTACT_TOPIC.name
    subject_field = "contact_id"

    contact_id: str
    organisation_id: str


class ContactAdded(_ContactEvent):
    """A person was added to an organisation (no personal data: see ``ContactReference``)."""

    event_type = "distretto.membership.contact.added.v2"
    contact: ContactReference


class ContactUpdated(_ContactEvent):
    """A person's data or consent changed; carries the whole new reference (no personal data)."""

    event_type = "distretto.membership.contact.updated.v2"
    contact: ContactReference


class ContactErased(_ContactEvent):
    """A person was erased (GDPR): every service must erase what it holds of them.

    Carries no personal data: services find the person by ``contact_id`` or by
    the SHA-256 of the lower-cased email address.
    """

    event_type = "distretto.membership.contact.erased.v2"
    email_sha256: str


class DistrictFiguresChanged(Event):
    """The district's aggregate figures changed (debounced)."""

    event_type = "distretto.membership.figures.changed.v1"
    topic = FIGURES_TOPIC.name
    subject_field = "district"

    district: str = "district"
    computed_at: datetime
    year: int | None = None
    members_total: int
    by_status: dict[str, int] = {}
    by_kind: dict[str, int] = {}
    by_sector: dict[str, int] = {}
    by_size_class: dict[str, int] = {}
    companies: int = 0
    staff: int = 0
    rd_staff: int = 0
    turnover_eur: float = 0
    lab_m2: float = 0
    patents: int = 0
