"""Tables and API shapes of the people of the register: contacts, their personal data, their GDPR export."""

from __future__ import annotations

import re
from typing import Any

from pydantic import field_validator
from sqlmodel import Field, SQLModel

from distretto_shared.conventions import Id, UtcDateTime
from membership.tables import STRICT_INPUT, UTC_DT, Base, new_id, utcnow

EMAIL_RE = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
PHONE_RE = re.compile(r"\+?[0-9 ()./-]{5,30}")


class ContactBase(Base):
    """What is kept of a person besides name and address."""

    role: str = Field(default="", max_length=200)
    phone: str | None = Field(default=None, max_length=40)
    language: str = Field(default="it", max_length=5)
    consent_newsletter: bool = False
    consent_data_processing: bool = False


def _check_email(value: str) -> str:
    if not EMAIL_RE.fullmatch(value):
        raise ValueError(f"{value!r} is not an email address")
    return value


def _check_phone(value: str | None) -> str | None:
    if value and not PHONE_RE.fullmatch(value):
        raise ValueError(f"{value!r} is not a phone number")
    return value or None


class ContactCreate(ContactBase):
    """Body of ``POST /organisations/{id}/contacts``."""

    model_config = STRICT_INPUT  # type: ignore[assignment]

    first_name: str = Field(min_length=1, max_length=100)
    last_name: str = Field(min_length=1, max_length=100)
    email: str = Field(max_length=254)
    consent_source: str = Field(default="api", min_length=1, max_length=100)
    """Where the consent was given (web form, paper form, event …)."""

    @field_validator("email")
    @classmethod
    def _email(cls, value: str) -> str:
        return _check_email(value)

    @field_validator("phone")
    @classmethod
    def _phone(cls, value: str | None) -> str | None:
        return _check_phone(value)


class ContactUpdate(Base):
    """Body of ``PATCH /contacts/{id}``: only the fields sent change."""

    model_config = STRICT_INPUT  # type: ignore[assignment]

    first_name: str | None = Field(default=None, min_length=1, max_length=100)
    last_name: str | None = Field(default=None, min_length=1, max_length=100)
    email: str | None = Field(default=None, max_length=254)
    role: str | None = Field(default=None, max_length=200)
    phone: str | None = Field(default=None, max_length=40)
    language: str | None = Field(default=None, max_length=5)
    consent_newsletter: bool | None = None
    consent_data_processing: bool | None = None
    consent_source: str = Field(default="api", min_length=1, max_length=100)

    @field_validator("email")
    @classmethod
    def _email(cls, value: str | None) -> str | None:
        return None if value is None else _check_email(value)

    @field_validator("phone")
    @classmethod
    def _phone(cls, value: str | None) -> str | None:
        return _check_phone(value)


class Contact(ContactBase, table=True):
    """A person of an organisation. After erasure only the row's ids and dates remain."""

    __tablename__ = "contact"

    id: str = Field(default_factory=new_id, primary_key=True, max_length=36)
    organisation_id: str = Field(foreign_key="organisation.id", max_length=36, index=True)
    first_name: str = Field(default="", max_length=100)
    last_name: str = Field(default="", max_length=100)
    email: str | None = Field(default=None, max_length=254, index=True)
    consent_newsletter_at: UtcDateTime | None = Field(default=None, sa_type=UTC_DT)
    consent_newsletter_source: str | None = Field(default=None, max_length=100)
    consent_data_processing_at: UtcDateTime | None = Field(default=None, sa_type=UTC_DT)
    consent_data_processing_source: str | None = Field(default=None, max_length=100)
    erased_at: UtcDateTime | None = Field(default=None, sa_type=UTC_DT)
    created_at: UtcDateTime = Field(default_factory=utcnow, sa_type=UTC_DT)
    updated_at: UtcDateTime = Field(default_factory=utcnow, sa_type=UTC_DT)


class ContactPublic(ContactBase):
    """A contact as the API shows it."""

    id: Id
    organisation_id: Id
    first_name: str
    last_name: str
    email: str | None
    consent_newsletter_at: UtcDateTime | None = None
    consent_newsletter_source: str | None = None
    consent_data_processing_at: UtcDateTime | None = None
    consent_data_processing_source: str | None = None
    erased_at: UtcDateTime | None = None
    created_at: UtcDateTime
    updated_at: UtcDateTime


class ContactPersonalData(Base):
    """A contact's personal data, for a service allowed to ask (the newsletter) and staff."""

    contact_id: Id
    organisation_id: Id
    first_name: str
    last_name: str
    email: str
    phone: str | None = None
    role: str = ""
    language: str = "it"
    consent_newsletter: bool = False


class ContactDataExport(SQLModel):
    """``GET /contacts/{id}/export``: everything the register holds about one person (GDPR art. 15 and 20).

    A machine-readable copy: the person's record with every consent (when and where it was given),
    the organisation it belongs to, and what other services of the district receive about it.
    """

    format: str = "distretto.membership.contact-export.v1"
    exported_at: UtcDateTime
    controller: str
    """Who holds the data: the foundation's register."""
    contact: ContactPublic
    organisation: dict[str, str]
    """The organisation the person is a contact of (id and name)."""
    shared_with_other_services: dict[str, Any]
    """What the district's other services receive on the shared topics (no name, email or phone)."""
