"""Read models fed by membership's events: member contacts and organisations."""

from __future__ import annotations

from datetime import date

import sqlalchemy as sa
from sqlmodel import Column, Field

from distretto_shared.conventions import UtcDateTime
from newsletter.tables import Base, utcnow


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
