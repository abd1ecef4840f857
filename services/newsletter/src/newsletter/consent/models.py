"""Proof of consent, the sign-up rate counter, and the public sign-up and preferences forms."""

from __future__ import annotations

import sqlalchemy as sa
from pydantic import BaseModel, field_validator
from pydantic import Field as PField
from sqlmodel import Column, Field

from distretto_shared.conventions import UtcDateTime
from newsletter.tables import Base, Ref, Strict, clean_interests, new_id, utcnow, valid_email


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

    _email = field_validator("email")(valid_email)
    _interests = field_validator("interests")(clean_interests)

    @field_validator("consent")
    @classmethod
    def _consented(cls, v: bool) -> bool:
        if not v:
            raise ValueError("consent must be given to subscribe")
        return v


class Preferences(BaseModel):
    lists: list[Ref] = []
    interests: list[str] = []
    name: str | None = None
    unsubscribe_all: bool = False
