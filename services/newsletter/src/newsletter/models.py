# Over 500 lines: every table of the newsletter and its API shapes. The use cases are split per
# aggregate; moving each aggregate's tables and shapes into its package is still open work.
"""Tables of the newsletter service and their API shapes."""

from __future__ import annotations

from datetime import UTC, date, datetime
from typing import Annotated, Any
from urllib.parse import urlsplit
from uuid import uuid4

import sqlalchemy as sa
from pydantic import AwareDatetime, BaseModel, ConfigDict, StringConstraints, field_validator
from pydantic import Field as PField
from sqlmodel import Column, Field, SQLModel

from distretto_shared.conventions import HexId, Id, UtcDateTime
from distretto_shared.tables import service_registry
from newsletter import domain


def new_id() -> str:
    """A fresh UUID string."""
    return uuid4().hex


def utcnow() -> datetime:
    """Now, in UTC."""
    return datetime.now(UTC)


def _ts(nullable: bool = True) -> Any:
    return Field(default=None, sa_column=Column(sa.DateTime(timezone=True), nullable=nullable))


class Base(SQLModel, registry=service_registry()):
    """Base of the newsletter service's table models: its tables (and the backbone's) on its own metadata."""


class Strict(BaseModel):
    """Request bodies refuse unknown fields, so a typo is a 422, not silently ignored."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


ID_CHARACTERS = r"^[A-Za-z0-9_-]+$"
"""What an id given in either form is made of (anything else is refused before a lookup: PostgreSQL
refuses a NUL in text, which would otherwise be a 500)."""
Ref = Annotated[str, StringConstraints(min_length=1, max_length=200, pattern=r"^[^\x00-\x1f\x7f]+$")]
"""A list or a segment named by its id (either form), its slug or its name: no control characters."""


def _email(value: str) -> str:
    try:
        return domain.normalise_email(value)
    except ValueError as exc:
        raise ValueError(f"{value!r} is not a valid email address") from exc


# -- lists -------------------------------------------------------------------


class MailingListBase(Base):
    slug: str = Field(max_length=80, unique=True)
    name: str = Field(max_length=200)
    description: str = Field(default="", max_length=2000)
    visibility: str = Field(default="public", max_length=10)


class MailingList(MailingListBase, table=True):
    __tablename__ = "mailing_list"
    id: str = Field(default_factory=new_id, primary_key=True, max_length=32)
    created_at: UtcDateTime = Field(
        default_factory=utcnow, sa_column=Column(sa.DateTime(timezone=True), nullable=False)
    )


class MailingListCreate(Strict):
    slug: str = PField(pattern=r"^[a-z0-9][a-z0-9-]{0,79}$", description="lower-case letters, digits, dashes")
    name: str = PField(min_length=1, max_length=200)
    description: str = PField(default="", max_length=2000)
    visibility: str = PField(default="public", pattern=r"^(public|private)$")


class MailingListPublic(MailingListBase):
    id: Id
    created_at: UtcDateTime
    subscribers: int = 0


# -- subscribers ---------------------------------------------------------------


class Subscriber(Base, table=True):
    __tablename__ = "subscriber"
    id: str = Field(default_factory=new_id, primary_key=True, max_length=32)
    email: str = Field(max_length=254, unique=True)
    email_sha256: str = Field(max_length=64, index=True)
    name: str = Field(default="", max_length=200)
    language: str = Field(default="it", max_length=10)
    attributes: dict[str, Any] = Field(default_factory=dict, sa_column=Column(sa.JSON, nullable=False))
    confirmed_at: UtcDateTime | None = _ts()
    suppressed: bool = False
    suppressed_reason: str | None = Field(default=None, max_length=40)
    soft_bounces: int = 0
    contact_id: str | None = Field(default=None, max_length=64, index=True)
    created_at: UtcDateTime = Field(
        default_factory=utcnow, sa_column=Column(sa.DateTime(timezone=True), nullable=False)
    )
    updated_at: UtcDateTime = Field(
        default_factory=utcnow, sa_column=Column(sa.DateTime(timezone=True), nullable=False)
    )


class Subscription(Base, table=True):
    """A subscriber on a list: unconfirmed, confirmed or unsubscribed (per list, as in listmonk)."""

    __tablename__ = "subscription"
    subscriber_id: str = Field(foreign_key="subscriber.id", primary_key=True, max_length=32, ondelete="CASCADE")
    list_id: str = Field(foreign_key="mailing_list.id", primary_key=True, max_length=32, index=True)
    status: str = Field(default="unconfirmed", max_length=20)
    created_at: UtcDateTime = Field(
        default_factory=utcnow, sa_column=Column(sa.DateTime(timezone=True), nullable=False)
    )
    updated_at: UtcDateTime = Field(
        default_factory=utcnow, sa_column=Column(sa.DateTime(timezone=True), nullable=False)
    )


class SubscriberInterest(Base, table=True):
    __tablename__ = "subscriber_interest"
    subscriber_id: str = Field(foreign_key="subscriber.id", primary_key=True, max_length=32, ondelete="CASCADE")
    interest: str = Field(primary_key=True, max_length=80, index=True)


class ConsentRecord(Base, table=True):
    """Proof of consent: what was agreed (or withdrawn), when, where, with which wording, from which address."""

    __tablename__ = "consent_record"
    id: str = Field(default_factory=new_id, primary_key=True, max_length=32)
    subscriber_id: str = Field(foreign_key="subscriber.id", max_length=32, index=True, ondelete="CASCADE")
    action: str = Field(max_length=30)
    lists: list[str] = Field(default_factory=list, sa_column=Column(sa.JSON, nullable=False))
    source: str = Field(max_length=200)
    wording_version: str = Field(max_length=50)
    client_address: str | None = Field(default=None, max_length=100)
    user_agent: str | None = Field(default=None, max_length=300)
    at: UtcDateTime = Field(default_factory=utcnow, sa_column=Column(sa.DateTime(timezone=True), nullable=False))
    campaign_id: str | None = Field(default=None, max_length=32, index=True)
    """The campaign whose link was used to unsubscribe (its report counts the unsubscribes)."""


class RateHit(Base, table=True):
    """One accepted sign-up, counted against its address and its client."""

    __tablename__ = "rate_hit"
    id: int | None = Field(default=None, primary_key=True)
    scope: str = Field(max_length=20)
    key: str = Field(max_length=100)
    at: UtcDateTime = Field(default_factory=utcnow, sa_column=Column(sa.DateTime(timezone=True), nullable=False))
    __table_args__ = (sa.Index("ix_rate_hit_scope_key_at", "scope", "key", "at"),)


def _interests(values: list[str]) -> list[str]:
    out = []
    for v in values:
        v = v.strip().lower()
        if not v or len(v) > 80:
            raise ValueError("interests are 1–80 characters each")
        if v not in out:
            out.append(v)
    return out


class SignUp(Strict):
    """A public sign-up (double opt-in)."""

    email: str
    name: str = PField(default="", max_length=200)
    lists: list[Ref] = PField(min_length=1, max_length=20)
    """Slugs of public lists."""
    interests: list[str] = PField(default_factory=list, max_length=30)
    language: str = PField(default="it", max_length=10)
    consent: bool
    """The box the person ticked; must be true."""
    consent_wording_version: str | None = PField(default=None, max_length=50)
    source: str = PField(default="web-form", max_length=200)

    _email = field_validator("email")(_email)
    _interests = field_validator("interests")(_interests)

    @field_validator("consent")
    @classmethod
    def _consented(cls, v: bool) -> bool:
        if not v:
            raise ValueError("consent must be given to subscribe")
        return v


class SubscriberCreate(Strict):
    """An administrator adds a subscriber (e.g. an import with consent collected elsewhere)."""

    email: str
    name: str = PField(default="", max_length=200)
    lists: list[Ref] = PField(default_factory=list, max_length=50)
    interests: list[str] = PField(default_factory=list, max_length=30)
    language: str = PField(default="it", max_length=10)
    attributes: dict[str, Any] = PField(default_factory=dict)
    preconfirmed: bool = False
    """True only when consent was collected elsewhere (recorded with ``consent_source``)."""
    consent_source: str = PField(default="admin", max_length=200)
    consent_wording_version: str | None = PField(default=None, max_length=50)

    _email = field_validator("email")(_email)
    _interests = field_validator("interests")(_interests)


class SubscriberUpdate(Strict):
    name: str | None = PField(default=None, max_length=200)
    language: str | None = PField(default=None, max_length=10)
    interests: list[str] | None = PField(default=None, max_length=30)
    attributes: dict[str, Any] | None = None

    @field_validator("interests")
    @classmethod
    def _i(cls, v: list[str] | None) -> list[str] | None:
        return None if v is None else _interests(v)


class SubscriptionPublic(BaseModel):
    list_id: Id
    list_slug: str
    status: str


class SubscriberPublic(BaseModel):
    id: Id
    email: str
    name: str
    language: str
    attributes: dict[str, Any]
    confirmed_at: UtcDateTime | None
    suppressed: bool
    suppressed_reason: str | None
    soft_bounces: int
    interests: list[str] = []
    subscriptions: list[SubscriptionPublic] = []
    created_at: UtcDateTime


# -- templates -----------------------------------------------------------------


class TemplateBase(Base):
    name: str = Field(max_length=200, unique=True)
    subject: str = Field(max_length=300)
    body_html: str = Field(sa_type=sa.Text)
    body_text: str = Field(sa_type=sa.Text)


class Template(TemplateBase, table=True):
    __tablename__ = "template"
    id: str = Field(default_factory=new_id, primary_key=True, max_length=32)
    created_at: UtcDateTime = Field(
        default_factory=utcnow, sa_column=Column(sa.DateTime(timezone=True), nullable=False)
    )
    updated_at: UtcDateTime = Field(
        default_factory=utcnow, sa_column=Column(sa.DateTime(timezone=True), nullable=False)
    )


class TemplateCreate(Strict):
    name: str = PField(min_length=1, max_length=200)
    subject: str = PField(min_length=1, max_length=300)
    body_html: str = PField(min_length=1, max_length=500_000)
    body_text: str = PField(min_length=1, max_length=500_000)


class TemplateUpdate(Strict):
    name: str | None = PField(default=None, min_length=1, max_length=200)
    subject: str | None = PField(default=None, min_length=1, max_length=300)
    body_html: str | None = PField(default=None, min_length=1, max_length=500_000)
    body_text: str | None = PField(default=None, min_length=1, max_length=500_000)


class TemplatePublic(TemplateBase):
    id: Id
    created_at: UtcDateTime
    updated_at: UtcDateTime


# -- campaigns -----------------------------------------------------------------


class Campaign(Base, table=True):
    __tablename__ = "campaign"
    id: str = Field(default_factory=new_id, primary_key=True, max_length=32)
    name: str = Field(max_length=200)
    subject: str = Field(max_length=300)
    template_id: str = Field(foreign_key="template.id", max_length=32)
    lists: list[str] = Field(default_factory=list, sa_column=Column(sa.JSON, nullable=False))
    interests: list[str] = Field(default_factory=list, sa_column=Column(sa.JSON, nullable=False))
    segments: list[str] = Field(default_factory=list, sa_column=Column(sa.JSON, nullable=False, server_default="[]"))
    """Segment ids: when given, only subscribers of the lists who are in at least one of them."""
    data: dict[str, Any] = Field(default_factory=dict, sa_column=Column(sa.JSON, nullable=False))
    kind: str = Field(default="regular", max_length=20)
    status: str = Field(default="draft", max_length=20, index=True)
    send_at: UtcDateTime | None = _ts()
    started_at: UtcDateTime | None = _ts()
    finished_at: UtcDateTime | None = _ts()
    recipients: int = 0
    web_url: str | None = Field(default=None, max_length=500)
    """The issue's public web version (e.g. on the foundation's site): when set, starting the campaign
    announces it to partners (``CampaignPublished``: subject and this link, nothing else)."""
    created_at: UtcDateTime = Field(
        default_factory=utcnow, sa_column=Column(sa.DateTime(timezone=True), nullable=False)
    )
    updated_at: UtcDateTime = Field(
        default_factory=utcnow, sa_column=Column(sa.DateTime(timezone=True), nullable=False)
    )


def _web_url(value: str | None) -> str | None:
    if value is None:
        return None
    parts = urlsplit(value)
    if parts.scheme not in ("https", "http") or not parts.hostname or parts.username or parts.password:
        raise ValueError("web_url must be an absolute http(s) URL without credentials")
    return value


class CampaignCreate(Strict):
    name: str = PField(min_length=1, max_length=200)
    subject: str = PField(min_length=1, max_length=300)
    """Jinja2 (subscriber fields available); CR/LF never reach the header."""
    template_id: HexId = PField(min_length=1, max_length=32, pattern=ID_CHARACTERS)
    lists: list[Ref] = PField(min_length=1, max_length=50)
    """List ids (either form) or slugs."""
    interests: list[str] = PField(default_factory=list, max_length=30)
    """When given, only subscribers sharing at least one of these interests."""
    segments: list[Ref] = PField(default_factory=list, max_length=20)
    """Segment ids (either form) or names: when given, only subscribers of the lists who are in at least one of them."""
    data: dict[str, Any] = PField(default_factory=dict)
    web_url: str | None = PField(default=None, max_length=500)
    """The issue's public web version; when set, partners are told when the campaign starts."""

    _interests = field_validator("interests")(_interests)
    _web = field_validator("web_url")(_web_url)


class CampaignUpdate(Strict):
    name: str | None = PField(default=None, min_length=1, max_length=200)
    subject: str | None = PField(default=None, min_length=1, max_length=300)
    template_id: HexId | None = PField(default=None, min_length=1, max_length=32, pattern=ID_CHARACTERS)
    lists: list[Ref] | None = PField(default=None, min_length=1, max_length=50)
    interests: list[str] | None = PField(default=None, max_length=30)
    segments: list[Ref] | None = PField(default=None, max_length=20)
    data: dict[str, Any] | None = None
    web_url: str | None = PField(default=None, max_length=500)

    _web = field_validator("web_url")(_web_url)

    @field_validator("interests")
    @classmethod
    def _i(cls, v: list[str] | None) -> list[str] | None:
        return None if v is None else _interests(v)


class Schedule(Strict):
    send_at: AwareDatetime
    """In the future, with its offset (``2025-05-01T09:00:00Z``): a time without one is refused."""


class SendTest(Strict):
    emails: list[str] = PField(min_length=1, max_length=10)

    @field_validator("emails")
    @classmethod
    def _e(cls, v: list[str]) -> list[str]:
        return [_email(e) for e in v]


class CampaignStats(BaseModel):
    pending: int = 0
    sending: int = 0
    sent: int = 0
    failed: int = 0
    skipped: int = 0
    cancelled: int = 0
    bounced: int = 0
    """Bounces reported for this campaign's mails (by the SMTP server or the provider's webhook)."""
    unsubscribed: int = 0
    """People who unsubscribed through this campaign's link."""


class TransactionalMails(BaseModel):
    """The mails sent outside campaigns, by kind, counted by delivery status."""

    confirmation: CampaignStats
    welcome: CampaignStats


class CampaignPublic(BaseModel):
    id: Id
    name: str
    subject: str
    template_id: Id
    lists: list[Id]
    """The lists' ids."""
    interests: list[str]
    segments: list[Id] = []
    """The segments' ids."""
    data: dict[str, Any]
    kind: str
    status: str
    send_at: UtcDateTime | None
    started_at: UtcDateTime | None
    finished_at: UtcDateTime | None
    recipients: int
    web_url: str | None = None
    created_at: UtcDateTime
    stats: CampaignStats | None = None


class AudienceChoice(Strict):
    """Lists, interests and segments being chosen for a campaign not saved yet."""

    lists: list[Ref] = PField(min_length=1, max_length=50)
    interests: list[str] = PField(default_factory=list, max_length=30)
    segments: list[Ref] = PField(default_factory=list, max_length=20)

    _interests = field_validator("interests")(_interests)


class AudienceCount(BaseModel):
    """How many people a choice of lists, interests and segments reaches now."""

    recipients: int


class CampaignRecipients(BaseModel):
    """How many people a campaign goes to."""

    campaign_id: Id
    status: str
    recipients: int
    frozen: bool
    """True once the campaign started: the number is its ledger's, no longer counted anew."""


# -- the delivery ledger ---------------------------------------------------------


class Delivery(Base, table=True):
    """One mail to one recipient: the ledger row that makes delivery exactly-once.

    Campaign rows are one per (campaign, subscriber) (unique); transactional rows
    (confirmation, welcome) are unique by ``dedupe_key`` and carry their rendered content.
    Status: pending → sending (claimed with a token and a lease) → sent | failed | skipped | cancelled.
    """

    __tablename__ = "delivery"
    id: int | None = Field(default=None, primary_key=True)
    campaign_id: str | None = Field(default=None, max_length=32)
    subscriber_id: str | None = Field(default=None, max_length=32)
    kind: str = Field(default="campaign", max_length=20)
    dedupe_key: str = Field(max_length=200, unique=True)
    email: str | None = Field(default=None, max_length=254)
    payload: dict[str, Any] | None = Field(default=None, sa_column=Column(sa.JSON, nullable=True))
    status: str = Field(default="pending", max_length=20)
    claim_token: str | None = Field(default=None, max_length=32)
    claimed_at: UtcDateTime | None = _ts()
    attempts: int = 0
    next_attempt_at: UtcDateTime | None = _ts()
    smtp_server: str | None = Field(default=None, max_length=200)
    smtp_code: int | None = None
    smtp_reply: str | None = Field(default=None, max_length=500)
    message_id: str | None = Field(default=None, max_length=300)
    sent_at: UtcDateTime | None = _ts()
    created_at: UtcDateTime = Field(
        default_factory=utcnow, sa_column=Column(sa.DateTime(timezone=True), nullable=False)
    )
    __table_args__ = (
        sa.UniqueConstraint("campaign_id", "subscriber_id", name="uq_delivery_campaign_subscriber"),
        sa.Index("ix_delivery_status_campaign", "status", "campaign_id", "id"),
    )


class DeliveryPublic(BaseModel):
    id: int
    campaign_id: Id | None
    subscriber_id: Id | None
    kind: str
    status: str
    attempts: int
    smtp_server: str | None
    smtp_code: int | None
    smtp_reply: str | None
    message_id: str | None
    sent_at: UtcDateTime | None


class SendTestResult(BaseModel):
    email: str
    ok: bool
    smtp_code: int | None
    smtp_reply: str


# -- bounces -------------------------------------------------------------------


class Bounce(Base, table=True):
    __tablename__ = "bounce"
    id: str = Field(default_factory=new_id, primary_key=True, max_length=32)
    subscriber_id: str = Field(foreign_key="subscriber.id", max_length=32, index=True, ondelete="CASCADE")
    campaign_id: str | None = Field(default=None, max_length=32)
    kind: str = Field(max_length=20)
    source: str = Field(max_length=20)
    reason: str = Field(default="", max_length=1000)
    at: UtcDateTime = Field(default_factory=utcnow, sa_column=Column(sa.DateTime(timezone=True), nullable=False))
    suppressed: bool = Field(default=False, sa_column=Column(sa.Boolean, nullable=False, server_default=sa.false()))
    """The address was suppressed after this bounce (by it, or already before)."""


class BounceReport(Strict):
    """What a bounce webhook sends (a mail provider, or a mailbox scanner)."""

    email: str
    kind: domain.BounceKind
    reason: str = PField(default="", max_length=1000)
    campaign_id: HexId | None = PField(default=None, max_length=32, pattern=ID_CHARACTERS)
    """The campaign's id, either form (the ``Feedback-ID`` header of its mails carries the 32-hex one)."""

    _email = field_validator("email")(_email)


class BounceAccepted(BaseModel):
    """The webhook's one answer, the same whether the address is known or not (no enumeration)."""

    status: str = "accepted"
    message: str = "report received"


class WebhookReceipt(Base, table=True):
    """A signed webhook message already handled (by its ``webhook-id``): a replay changes nothing."""

    __tablename__ = "webhook_receipt"
    id: str = Field(primary_key=True, max_length=200)
    received_at: UtcDateTime = Field(
        default_factory=utcnow, sa_column=Column(sa.DateTime(timezone=True), nullable=False)
    )


class Suppression(Base, table=True):
    """An address never to be mailed again, kept only as the SHA-256 of the lower-cased address."""

    __tablename__ = "suppression"
    email_sha256: str = Field(primary_key=True, max_length=64)
    reason: str = Field(max_length=40)
    at: UtcDateTime = Field(default_factory=utcnow, sa_column=Column(sa.DateTime(timezone=True), nullable=False))


class BouncePublic(BaseModel):
    id: Id
    subscriber_id: Id
    campaign_id: Id | None
    kind: str
    source: str
    reason: str
    at: UtcDateTime
    suppressed: bool = False


# -- read models fed by other services' events ---------------------------------------


class MemberContact(Base, table=True):
    """A member organisation's contact: consents and hash from membership's events, name and
    address fetched from membership over HTTP only while the contact consents to the newsletter."""

    __tablename__ = "member_contact"
    contact_id: str = Field(primary_key=True, max_length=64)
    organisation_id: str = Field(max_length=64, index=True)
    email: str = Field(max_length=254)
    email_sha256: str = Field(max_length=64, index=True)
    first_name: str = Field(default="", max_length=200)
    last_name: str = Field(default="", max_length=200)
    language: str = Field(default="it", max_length=10)
    role: str = Field(default="", max_length=200)
    """The contact's role in its organisation, fetched with the name (segments select on it)."""
    consent_newsletter: bool = False
    details_due: bool = False
    """The event said the contact consents; name and address are still to be fetched from membership."""
    updated_at: UtcDateTime = Field(
        default_factory=utcnow, sa_column=Column(sa.DateTime(timezone=True), nullable=False)
    )


class MemberOrganisation(Base, table=True):
    """A member organisation as far as mails need it (name and first join)."""

    __tablename__ = "member_organisation"
    organisation_id: str = Field(primary_key=True, max_length=64)
    name: str = Field(max_length=300)
    first_joined_on: date | None = None


class DigestItem(Base, table=True):
    """Something worth a line in the next digest, kept from another service's event."""

    __tablename__ = "digest_item"
    id: str = Field(default_factory=new_id, primary_key=True, max_length=32)
    kind: str = Field(max_length=30)
    ref: str = Field(max_length=200, unique=True)
    title: str = Field(max_length=500)
    detail: str = Field(default="", max_length=2000)
    occurred_on: date | None = None
    sectors: list[str] = Field(default_factory=list, sa_column=Column(sa.JSON, nullable=False, server_default="[]"))
    """The sectors the line is about (a new member's, an opportunity's): a segment's digest keeps it by them."""
    campaign_id: str | None = Field(default=None, max_length=32, index=True)
    created_at: UtcDateTime = Field(
        default_factory=utcnow, sa_column=Column(sa.DateTime(timezone=True), nullable=False)
    )


# -- preferences (form posts) ----------------------------------------------------------


class Preferences(BaseModel):
    lists: list[Ref] = []
    interests: list[str] = []
    name: str | None = None
    unsubscribe_all: bool = False
