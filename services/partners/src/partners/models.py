"""Tables of the partners service and their API shapes."""

from __future__ import annotations

import re
from typing import Any
from uuid import uuid4

from pydantic import BaseModel, ConfigDict, field_validator
from pydantic import Field as PField
from sqlalchemy import JSON, BigInteger, Column, DateTime, Index, Integer, Text
from sqlmodel import Field, SQLModel

from distretto_shared.contracts.public import PUBLIC_TYPE_NAMES
from distretto_shared.conventions import HexId, Id, UtcDateTime
from distretto_shared.tables import service_registry


def _id() -> str:
    return uuid4().hex


def _ts(**kw: Any) -> Any:
    return Field(sa_column=Column(DateTime(timezone=True), **kw))


class Base(SQLModel, registry=service_registry()):
    """Base of the partners service's table models: its tables (and the backbone's) on its own metadata."""


class Partner(Base, table=True):
    """A partner system: what it may receive and the credentials of its channels."""

    __tablename__ = "partner"

    id: str = Field(default_factory=_id, primary_key=True, max_length=64)
    name: str = Field(max_length=200)
    event_types: list[str] = Field(sa_column=Column(JSON, nullable=False))
    api_key_id: str | None = Field(default=None, max_length=64, unique=True)
    """The gateway API key (role ``partner``) the partner streams with: it calls as ``apikey:<id>``."""
    contact_email: str | None = Field(default=None, max_length=320)
    """Where notices go (an endpoint disabled): ask partners for a team address, not a person's."""
    active: bool = True
    kafka_user: str | None = Field(default=None, max_length=120)
    """The partner's SCRAM user on the broker, when it has direct Kafka access."""
    created_at: UtcDateTime = _ts(nullable=False)
    updated_at: UtcDateTime = _ts(nullable=False)


class PublicEventRow(Base, table=True):
    """The public-event log: every projected event once, numbered; ``seq`` is the SSE id."""

    __tablename__ = "public_event"

    seq: int | None = Field(
        default=None,
        sa_column=Column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    )
    event_id: str = Field(max_length=64, unique=True)
    event_type: str = Field(max_length=200, index=True)
    subject: str = Field(max_length=200)
    source: str = Field(max_length=200)
    time: str = Field(max_length=64)
    payload: str = Field(sa_column=Column(Text, nullable=False))
    created_at: UtcDateTime = _ts(nullable=False, index=True)


class OrganisationView(Base, table=True):
    """What the projector remembers of an organisation (public fields only)."""

    __tablename__ = "organisation_view"

    organisation_id: str = Field(primary_key=True, max_length=64)
    name: str = Field(max_length=500)
    kind: str = Field(max_length=40)
    sectors: list[str] = Field(sa_column=Column(JSON, nullable=False))
    province: str | None = Field(default=None, max_length=10)
    size_class: str | None = Field(default=None, max_length=20)
    status: str = Field(max_length=20)
    member: bool = False
    """True while the public catalogue counts it as a member (joined and not left)."""


class ProjectView(Base, table=True):
    """The projector's memory of a project (its acronym, for status and deliverable events)."""

    __tablename__ = "project_view"

    project_id: str = Field(primary_key=True, max_length=64)
    acronym: str = Field(max_length=100)


class WebhookEndpoint(Base, table=True):
    """A partner's webhook receiver."""

    __tablename__ = "webhook_endpoint"

    id: str = Field(default_factory=_id, primary_key=True, max_length=64)
    partner_id: str = Field(max_length=64, index=True, foreign_key="partner.id")
    url: str = Field(max_length=2000)
    event_types: list[str] = Field(sa_column=Column(JSON, nullable=False))
    """Subset of the partner's types (empty: all the partner may receive)."""
    secret: str = Field(max_length=300)
    """The signing secret, sealed (encrypted with the installation's ``PARTNERS_SECRET_KEY``)."""
    previous_secret: str | None = Field(default=None, max_length=300)
    """The one before the last rotation, sealed too (signs beside the new one until ``previous_secret_until``)."""
    previous_secret_until: UtcDateTime | None = _ts(nullable=True)
    enabled: bool = True
    disabled_reason: str | None = Field(default=None, max_length=500)
    failing_since: UtcDateTime | None = _ts(nullable=True)
    notice_due: bool = False
    """Disabled after failures and the partner not told yet (a worker mails the partner's contact)."""
    notice_attempt_at: UtcDateTime | None = _ts(nullable=True)
    notified_at: UtcDateTime | None = _ts(nullable=True)
    notice_error: str | None = Field(default=None, max_length=500)
    lease_owner: str | None = Field(default=None, max_length=64)
    lease_until: UtcDateTime | None = _ts(nullable=True)
    created_at: UtcDateTime = _ts(nullable=False)


class WebhookMessage(Base, table=True):
    """One event to deliver to one endpoint (delivered in ``id`` order per endpoint)."""

    __tablename__ = "webhook_message"
    __table_args__ = (Index("ix_webhook_message_endpoint_status", "endpoint_id", "status", "id"),)

    id: int | None = Field(
        default=None,
        sa_column=Column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    )
    endpoint_id: str = Field(max_length=64)
    seq: int = Field(sa_column=Column(BigInteger, nullable=False))
    event_id: str = Field(max_length=64)
    event_type: str = Field(max_length=200)
    status: str = Field(default="pending", max_length=20)
    """pending, delivered, failed"""
    attempts: int = 0
    next_attempt_at: UtcDateTime = _ts(nullable=False)
    replay: bool = False
    created_at: UtcDateTime = _ts(nullable=False)
    finished_at: UtcDateTime | None = _ts(nullable=True)


class WebhookAttempt(Base, table=True):
    """One HTTP attempt: the delivery log."""

    __tablename__ = "webhook_attempt"

    id: int | None = Field(
        default=None,
        sa_column=Column(BigInteger().with_variant(Integer, "sqlite"), primary_key=True, autoincrement=True),
    )
    endpoint_id: str = Field(max_length=64, index=True)
    message_id: int = Field(sa_column=Column(BigInteger, nullable=False, index=True))
    event_id: str = Field(max_length=64)
    attempt: int
    at: UtcDateTime = _ts(nullable=False)
    status_code: int | None = None
    response_ms: float | None = None
    error: str | None = Field(default=None, max_length=500)
    worker: str = Field(max_length=64)


# --- API shapes


def _check_types(value: list[str]) -> list[str]:
    unknown = sorted(set(value) - set(PUBLIC_TYPE_NAMES))
    if unknown:
        raise ValueError(f"unknown public event types: {', '.join(unknown)} (see GET /catalogue)")
    return sorted(set(value))


_EMAIL = re.compile(r"[^@\s<>,;\"]+@[^@\s<>,;\"]+\.[^@\s<>,;\"]+")


def _check_email(value: str | None) -> str | None:
    if value is None:
        return None
    if len(value) > 320 or not _EMAIL.fullmatch(value):
        raise ValueError("contact_email must be one e-mail address")
    return value


class PartnerCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str = PField(min_length=1, max_length=200)
    event_types: list[str] = PField(min_length=1, max_length=50)
    api_key_id: HexId | None = PField(default=None, min_length=1, max_length=64)
    contact_email: str | None = PField(default=None, max_length=320)
    """Where the partner is told that an endpoint was disabled."""
    kafka: bool = False
    """Also give the partner direct Kafka access (its SCRAM user; the password is in the answer, once)."""

    _types = field_validator("event_types")(_check_types)
    _email = field_validator("contact_email")(_check_email)


class PartnerUpdate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    name: str | None = PField(default=None, min_length=1, max_length=200)
    event_types: list[str] | None = PField(default=None, min_length=1, max_length=50)
    api_key_id: HexId | None = PField(default=None, min_length=1, max_length=64)
    contact_email: str | None = PField(default=None, max_length=320)
    active: bool | None = None

    _email = field_validator("contact_email")(_check_email)

    @field_validator("event_types")
    @classmethod
    def _types(cls, value: list[str] | None) -> list[str] | None:
        return None if value is None else _check_types(value)


class PartnerPublic(BaseModel):
    id: Id
    name: str
    event_types: list[str]
    api_key_id: Id | None
    contact_email: str | None = None
    active: bool
    kafka_user: str | None = None
    created_at: UtcDateTime
    updated_at: UtcDateTime


class KafkaAccessOut(BaseModel):
    """A partner's Kafka credentials: the password is shown in this answer only."""

    username: str
    password: str
    mechanism: str = "SCRAM-SHA-512"
    security_protocol: str = "SASL_PLAINTEXT"
    bootstrap_servers: str
    topics: list[str]
    """The topics it may read (and nothing else)."""
    group_prefix: str
    """Its consumer group ids must start with this."""


class PartnerCreated(PartnerPublic):
    kafka: KafkaAccessOut | None = None


class EndpointCreate(BaseModel):
    model_config = ConfigDict(extra="forbid")

    url: str = PField(min_length=8, max_length=2000)
    event_types: list[str] = PField(default_factory=list, max_length=50)

    @field_validator("event_types")
    @classmethod
    def _types(cls, value: list[str]) -> list[str]:
        return _check_types(value)


class EndpointPublic(BaseModel):
    id: Id
    partner_id: Id
    url: str
    event_types: list[str]
    enabled: bool
    disabled_reason: str | None
    failing_since: UtcDateTime | None
    notified_at: UtcDateTime | None = None
    """When the partner was told (by e-mail) that the endpoint was disabled after failures."""
    notice_error: str | None = None
    previous_secret_until: UtcDateTime | None
    created_at: UtcDateTime


class EndpointWithSecret(EndpointPublic):
    secret: str
    """Shown once: keep it; rotate to get a new one."""


class ReplayRequest(BaseModel):
    model_config = ConfigDict(extra="forbid")

    event_id: Id | None = PField(default=None, min_length=1, max_length=64)
    since: UtcDateTime | None = None


class ReplayResult(BaseModel):
    queued: int


class MessagePublic(BaseModel):
    id: int
    endpoint_id: Id
    seq: int
    event_id: Id
    event_type: str
    status: str
    attempts: int
    next_attempt_at: UtcDateTime
    replay: bool
    created_at: UtcDateTime
    finished_at: UtcDateTime | None


class AttemptPublic(BaseModel):
    id: int
    message_id: int
    event_id: Id
    attempt: int
    at: UtcDateTime
    status_code: int | None
    response_ms: float | None
    error: str | None
