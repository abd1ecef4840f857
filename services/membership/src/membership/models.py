"""Tables of the register and their API shapes (XBase / XCreate / XUpdate / X / XPublic)."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, date, datetime
from typing import Annotated, Any

from pydantic import ConfigDict, StringConstraints, field_validator, model_validator
from sqlalchemy import JSON, DateTime, String, UniqueConstraint
from sqlmodel import Field, SQLModel

from distretto_shared.conventions import StrictFloat, StrictInt, UtcDateTime
from distretto_shared.tables import service_registry
from membership.domain import (
    LifecycleAction,
    MembershipStatus,
    OrganisationKind,
    Sector,
    SizeClass,
    normalise_vat,
)


def new_id() -> str:
    """A fresh identifier."""
    return str(uuid.uuid4())


def utcnow() -> datetime:
    """Now, in UTC."""
    return datetime.now(UTC)


def as_utc(value: datetime | None) -> datetime | None:
    """SQLite hands back naive datetimes: they are UTC."""
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=UTC)


STRICT_INPUT = ConfigDict(extra="forbid", str_strip_whitespace=True)
"""Input models refuse unknown fields (a typo must not be silently dropped)."""

Tag = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]
EMAIL_RE = re.compile(r"[^@\s]+@[^@\s]+\.[^@\s]+")
PHONE_RE = re.compile(r"\+?[0-9 ()./-]{5,30}")
ATECO_RE = re.compile(r"\d{2}(\.\d{1,2}){0,2}")
UTC_DT = DateTime(timezone=True)


class Base(SQLModel, registry=service_registry()):
    """Base of the membership service's table models: its tables (and the backbone's) on its own metadata."""


# -- Organisation ------------------------------------------------------------


class OrganisationBase(Base):
    """What the foundation's staff enter about an organisation."""

    name: str = Field(min_length=1, max_length=200, index=True)
    kind: OrganisationKind = Field(sa_type=String(40))
    sectors: list[Sector] = Field(default_factory=list, sa_type=JSON)
    address: str = Field(default="", max_length=300)
    postcode: str | None = Field(default=None, max_length=20)
    city: str | None = Field(default=None, max_length=100)
    province: str | None = Field(default=None, max_length=50, index=True)
    country: str = Field(default="IT", min_length=2, max_length=2)
    website: str | None = Field(default=None, max_length=300)
    vat_number: str | None = Field(default=None, max_length=30, index=True)
    ateco_code: str | None = Field(default=None, max_length=10)
    description: str = Field(default="", max_length=5000)
    competences: list[str] = Field(default_factory=list, sa_type=JSON)
    keywords: list[str] = Field(default_factory=list, sa_type=JSON)


class OrganisationCreate(OrganisationBase):
    """Body of ``POST /organisations`` (and one CSV row)."""

    model_config = STRICT_INPUT  # type: ignore[assignment]

    competences: list[Tag] = Field(default_factory=list, max_length=100)
    keywords: list[Tag] = Field(default_factory=list, max_length=100)

    @field_validator("sectors")
    @classmethod
    def _unique_sectors(cls, value: list[Sector]) -> list[Sector]:
        return list(dict.fromkeys(value))

    @field_validator("country")
    @classmethod
    def _country(cls, value: str) -> str:
        if not re.fullmatch(r"[A-Za-z]{2}", value):
            raise ValueError("country must be a two-letter ISO 3166 code such as IT")
        return value.upper()

    @field_validator("website")
    @classmethod
    def _website(cls, value: str | None) -> str | None:
        if not value:
            return None
        if not re.match(r"https?://", value, re.IGNORECASE):
            value = "https://" + value
        if not re.fullmatch(r"https?://[^\s/$.?#][^\s]*\.[^\s]+", value, re.IGNORECASE):
            raise ValueError(f"website {value!r} is not a web address")
        return value

    @field_validator("ateco_code")
    @classmethod
    def _ateco(cls, value: str | None) -> str | None:
        if not value:
            return None
        if not ATECO_RE.fullmatch(value):
            raise ValueError(f"ATECO code {value!r} must look like 72.11 or 21.20.09")
        return value

    @field_validator("postcode", "city", "province", "vat_number")
    @classmethod
    def _blank_is_none(cls, value: str | None) -> str | None:
        return value or None

    @model_validator(mode="after")
    def _vat_and_province(self) -> OrganisationCreate:
        if self.vat_number:
            self.vat_number = normalise_vat(self.vat_number, self.country)
        if self.province and self.country == "IT":
            if not re.fullmatch(r"[A-Za-z]{2}", self.province):
                raise ValueError(f"Italian province must be its two-letter code (FI, PI, SI …), got {self.province!r}")
            self.province = self.province.upper()
        return self


class OrganisationUpdate(Base):
    """Body of ``PATCH /organisations/{id}``: only the fields sent change."""

    model_config = STRICT_INPUT  # type: ignore[assignment]

    name: str | None = Field(default=None, min_length=1, max_length=200)
    kind: OrganisationKind | None = None
    sectors: list[Sector] | None = None
    address: str | None = Field(default=None, max_length=300)
    postcode: str | None = Field(default=None, max_length=20)
    city: str | None = Field(default=None, max_length=100)
    province: str | None = Field(default=None, max_length=50)
    country: str | None = Field(default=None, min_length=2, max_length=2)
    website: str | None = Field(default=None, max_length=300)
    vat_number: str | None = Field(default=None, max_length=30)
    ateco_code: str | None = Field(default=None, max_length=10)
    description: str | None = Field(default=None, max_length=5000)
    competences: list[Tag] | None = None
    keywords: list[Tag] | None = None


class Organisation(OrganisationBase, table=True):
    """A member (or applicant) of the district."""

    __tablename__ = "organisation"

    id: str = Field(default_factory=new_id, primary_key=True, max_length=36)
    status: MembershipStatus = Field(default=MembershipStatus.applied, sa_type=String(20), index=True)
    size_class: SizeClass | None = Field(default=None, sa_type=String(10), index=True)
    latest_year: int | None = None
    fee_plan_id: str | None = Field(default=None, foreign_key="fee_plan.id", max_length=36)
    joined_on: date | None = None
    renewal_due: date | None = Field(default=None, index=True)
    status_changed_at: UtcDateTime = Field(default_factory=utcnow, sa_type=UTC_DT)
    created_at: UtcDateTime = Field(default_factory=utcnow, sa_type=UTC_DT)
    updated_at: UtcDateTime = Field(default_factory=utcnow, sa_type=UTC_DT)


# -- Yearly figures ----------------------------------------------------------


class YearlyFiguresBase(Base):
    """An organisation's figures for one year."""

    staff: int = Field(ge=0, le=10_000_000)
    rd_staff: int = Field(default=0, ge=0, le=10_000_000)
    turnover_eur: float = Field(default=0, ge=0, le=1e13)
    lab_m2: float = Field(default=0, ge=0, le=1e8)
    patents: int = Field(default=0, ge=0, le=1_000_000)


class YearlyFiguresCreate(YearlyFiguresBase):
    """Body of ``PUT /organisations/{id}/figures/{year}``: the year's whole record.

    PUT replaces, so every field is required (422 naming the missing ones): a body with only
    ``staff`` must not set the turnover, lab space and patents of that year to zero.
    """

    model_config = STRICT_INPUT  # type: ignore[assignment]

    staff: StrictInt = Field(ge=0, le=10_000_000)
    rd_staff: StrictInt = Field(ge=0, le=10_000_000)
    turnover_eur: StrictFloat = Field(ge=0, le=1e13)
    lab_m2: StrictFloat = Field(ge=0, le=1e8)
    patents: StrictInt = Field(ge=0, le=1_000_000)

    @model_validator(mode="after")
    def _rd_within_staff(self) -> YearlyFiguresCreate:
        if self.rd_staff > self.staff:
            raise ValueError(f"R&D staff ({self.rd_staff}) cannot exceed staff ({self.staff})")
        return self


class YearlyFigures(YearlyFiguresBase, table=True):
    """Stored figures; one row per organisation and year."""

    __tablename__ = "yearly_figures"
    __table_args__ = (UniqueConstraint("organisation_id", "year", name="uq_yearly_figures_org_year"),)

    id: str = Field(default_factory=new_id, primary_key=True, max_length=36)
    organisation_id: str = Field(foreign_key="organisation.id", max_length=36, index=True)
    year: int
    updated_at: UtcDateTime = Field(default_factory=utcnow, sa_type=UTC_DT)


class YearlyFiguresPublic(YearlyFiguresBase):
    """Figures as the API shows them, with the size class they imply."""

    year: int
    size_class: SizeClass | None = None


class OrganisationPublic(OrganisationBase):
    """An organisation as the API shows it."""

    id: str
    status: MembershipStatus
    size_class: SizeClass | None = None
    latest_year: int | None = None
    latest_figures: YearlyFiguresPublic | None = None
    fee_plan_id: str | None = None
    joined_on: date | None = None
    renewal_due: date | None = None
    allowed_actions: list[LifecycleAction] = []
    status_changed_at: UtcDateTime
    created_at: UtcDateTime
    updated_at: UtcDateTime


# -- Fee plans and renewals --------------------------------------------------


class FeePlanBase(Base):
    """What a membership costs and for how long."""

    name: str = Field(min_length=1, max_length=100, unique=True)
    amount_eur: StrictFloat = Field(ge=0, le=1e9)
    period_months: StrictInt = Field(default=12, ge=1, le=60)
    grace_days: StrictInt = Field(default=30, ge=0, le=365)


class FeePlanCreate(FeePlanBase):
    """Body of ``POST /fee-plans``."""

    model_config = STRICT_INPUT  # type: ignore[assignment]


class FeePlan(FeePlanBase, table=True):
    """A fee plan."""

    __tablename__ = "fee_plan"

    id: str = Field(default_factory=new_id, primary_key=True, max_length=36)
    created_at: UtcDateTime = Field(default_factory=utcnow, sa_type=UTC_DT)


class FeePlanPublic(FeePlanBase):
    """A fee plan as the API shows it."""

    id: str


class RenewalCreate(Base):
    """Body of ``POST /organisations/{id}/renewals``: a paid renewal."""

    model_config = STRICT_INPUT  # type: ignore[assignment]

    paid_on: date | None = None
    """Default: today."""
    amount_eur: StrictFloat | None = Field(default=None, ge=0, le=1e9)
    """Default: the fee plan's amount (0 without a plan)."""


class Renewal(Base, table=True):
    """A paid membership period."""

    __tablename__ = "renewal"

    id: str = Field(default_factory=new_id, primary_key=True, max_length=36)
    organisation_id: str = Field(foreign_key="organisation.id", max_length=36, index=True)
    period_start: date
    period_end: date
    amount_eur: float
    paid_on: date
    created_at: UtcDateTime = Field(default_factory=utcnow, sa_type=UTC_DT)


class RenewalPublic(Base):
    """A renewal as the API shows it."""

    id: str
    organisation_id: str
    period_start: date
    period_end: date
    amount_eur: float
    paid_on: date


# -- Lifecycle requests and history --------------------------------------------


class ApproveRequest(Base):
    """Body of ``POST /organisations/{id}/approve``."""

    model_config = STRICT_INPUT  # type: ignore[assignment]

    fee_plan_id: str | None = None
    joined_on: date | None = None
    """Default: today. The first renewal falls due one period later."""


class ReasonRequest(Base):
    """Body of reject / suspend / reinstate / leave."""

    model_config = STRICT_INPUT  # type: ignore[assignment]

    reason: str = Field(default="", max_length=1000)


class StatusChange(Base, table=True):
    """One step of an organisation's lifecycle (the audit trail)."""

    __tablename__ = "status_change"

    id: str = Field(default_factory=new_id, primary_key=True, max_length=36)
    organisation_id: str = Field(foreign_key="organisation.id", max_length=36, index=True)
    action: LifecycleAction = Field(sa_type=String(20))
    from_status: MembershipStatus = Field(sa_type=String(20))
    to_status: MembershipStatus = Field(sa_type=String(20))
    reason: str = Field(default="", max_length=1000)
    at: UtcDateTime = Field(default_factory=utcnow, sa_type=UTC_DT)


class StatusChangePublic(Base):
    """A lifecycle step as the API shows it."""

    action: LifecycleAction
    from_status: MembershipStatus
    to_status: MembershipStatus
    reason: str
    at: UtcDateTime


# -- Contacts ----------------------------------------------------------------


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

    id: str
    organisation_id: str
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


# -- District figures --------------------------------------------------------


class PublishedFigures(Base, table=True):
    """The last district figures published, so a new event goes out only when they change."""

    __tablename__ = "published_figures"

    key: str = Field(primary_key=True, max_length=20)
    payload: dict[str, Any] = Field(sa_type=JSON)
    published_at: UtcDateTime = Field(sa_type=UTC_DT)


class DistrictFiguresPublic(Base):
    """``GET /figures``: the district's live aggregates."""

    computed_at: UtcDateTime
    year: int | None = None
    members_total: int
    by_status: dict[str, int]
    by_kind: dict[str, int]
    by_sector: dict[str, int]
    by_size_class: dict[str, int]
    companies: int
    staff: int
    rd_staff: int
    turnover_eur: float
    lab_m2: float
    patents: int


class ContactPersonalData(Base):
    """A contact's personal data, for a service allowed to ask (the newsletter) and staff."""

    contact_id: str
    organisation_id: str
    first_name: str
    last_name: str
    email: str
    phone: str | None = None
    role: str = ""
    language: str = "it"
    consent_newsletter: bool = False


class ImportResult(Base):
    """Answer of a successful CSV import."""

    imported: int
    """Rows imported: created plus updated."""
    created: int = 0
    updated: int = 0
    """Rows with an ``id`` of an organisation already in the register (changed in place)."""
    organisation_ids: list[str]
    """In the order of the rows."""
    warnings: list[dict[str, Any]] = []
    """Cells a spreadsheet would run as formulas (line, column, warning): imported as text, neutralised on export."""


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
