"""Tables and API shapes of the register (OrganisationBase / Create / Update / Organisation / Public)."""

from __future__ import annotations

import re
from datetime import date
from typing import Any

from pydantic import field_validator, model_validator
from sqlalchemy import JSON, String
from sqlmodel import Field

from distretto_shared.conventions import Id, UtcDateTime
from membership.figures.domain import SizeClass
from membership.figures.models import YearlyFiguresPublic
from membership.lifecycle.domain import LifecycleAction, MembershipStatus
from membership.organisations.domain import OrganisationKind, Sector, normalise_vat
from membership.tables import STRICT_INPUT, UTC_DT, Base, Tag, new_id, utcnow

ATECO_RE = re.compile(r"\d{2}(\.\d{1,2}){0,2}")


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


class OrganisationPublic(OrganisationBase):
    """An organisation as the API shows it."""

    id: Id
    status: MembershipStatus
    size_class: SizeClass | None = None
    latest_year: int | None = None
    latest_figures: YearlyFiguresPublic | None = None
    fee_plan_id: Id | None = None
    joined_on: date | None = None
    renewal_due: date | None = None
    allowed_actions: list[LifecycleAction] = []
    status_changed_at: UtcDateTime
    created_at: UtcDateTime
    updated_at: UtcDateTime


class ImportResult(Base):
    """Answer of a successful CSV import."""

    imported: int
    """Rows imported: created plus updated."""
    created: int = 0
    updated: int = 0
    """Rows with an ``id`` of an organisation already in the register (changed in place)."""
    organisation_ids: list[Id]
    """In the order of the rows."""
    warnings: list[dict[str, Any]] = []
    """Cells a spreadsheet would run as formulas (line, column, warning): imported as text, neutralised on export."""
