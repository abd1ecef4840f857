"""Subscribers and their subscriptions and interests: the tables and their API shapes."""

from __future__ import annotations

from typing import Any

import sqlalchemy as sa
from pydantic import BaseModel, field_validator
from pydantic import Field as PField
from sqlmodel import Column, Field

from distretto_shared.conventions import Id, UtcDateTime
from newsletter.tables import Base, Ref, Strict, clean_interests, new_id, timestamp_column, utcnow, valid_email


class Subscriber(Base, table=True):
    __tablename__ = "subscriber"
    id: str = Field(default_factory=new_id, primary_key=True, max_length=32)
    email: str = Field(max_length=254, unique=True)
    email_sha256: str = Field(max_length=64, index=True)
    name: str = Field(default="", max_length=200)
    language: str = Field(default="it", max_length=10)
    attributes: dict[str, Any] = Field(default_factory=dict, sa_column=Column(sa.JSON, nullable=False))
    confirmed_at: UtcDateTime | None = timestamp_column()
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

    _email = field_validator("email")(valid_email)
    _interests = field_validator("interests")(clean_interests)


class SubscriberUpdate(Strict):
    name: str | None = PField(default=None, max_length=200)
    language: str | None = PField(default=None, max_length=10)
    interests: list[str] | None = PField(default=None, max_length=30)
    attributes: dict[str, Any] | None = None

    @field_validator("interests")
    @classmethod
    def _i(cls, v: list[str] | None) -> list[str] | None:
        return None if v is None else clean_interests(v)


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
