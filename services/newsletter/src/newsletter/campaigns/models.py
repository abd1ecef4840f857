"""Campaigns: the table and the API shapes of campaigns, their audience, deliveries and test sends."""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

import sqlalchemy as sa
from pydantic import AwareDatetime, BaseModel, field_validator
from pydantic import Field as PField
from sqlmodel import Column, Field

from distretto_shared.conventions import HexId, Id, UtcDateTime
from newsletter.tables import (
    ID_CHARACTERS,
    Base,
    Ref,
    Strict,
    clean_interests,
    new_id,
    timestamp_column,
    utcnow,
    valid_email,
)


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
    send_at: UtcDateTime | None = timestamp_column()
    started_at: UtcDateTime | None = timestamp_column()
    finished_at: UtcDateTime | None = timestamp_column()
    recipients: int = 0
    """How many people it goes to: counted when it starts, the ledger's own count once its whole
    audience is frozen (see ``freeze_after``)."""
    freeze_after: str | None = Field(default=None, max_length=32)
    """Where freezing the audience into the ledger stopped: the last subscriber id frozen (the audience
    is frozen in subscriber-id order, one chunk at a time); ``None`` once nothing is left to freeze."""
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

    _interests = field_validator("interests")(clean_interests)
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
        return None if v is None else clean_interests(v)


class Schedule(Strict):
    send_at: AwareDatetime
    """In the future, with its offset (``2025-05-01T09:00:00Z``): a time without one is refused."""


class SendTest(Strict):
    emails: list[str] = PField(min_length=1, max_length=10)

    @field_validator("emails")
    @classmethod
    def _e(cls, v: list[str]) -> list[str]:
        return [valid_email(e) for e in v]


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

    _interests = field_validator("interests")(clean_interests)


class AudienceCount(BaseModel):
    """How many people a choice of lists, interests and segments reaches now."""

    recipients: int


class CampaignRecipients(BaseModel):
    """How many people a campaign goes to."""

    campaign_id: Id
    status: str
    recipients: int
    frozen: bool
    """True once the campaign started: the number is no longer counted anew (the count taken at the
    start, then the ledger's own once the whole audience is frozen)."""


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
