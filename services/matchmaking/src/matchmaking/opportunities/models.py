"""The opportunity table and its API shapes."""

from __future__ import annotations

import re
from datetime import date
from typing import Annotated

import sqlalchemy as sa
from pydantic import AfterValidator, BaseModel, Field, field_validator, model_validator
from pydantic.json_schema import SkipJsonSchema
from sqlmodel import Field as SQLField

from distretto_shared.conventions import Id, StrictInt, UtcDateTime
from matchmaking.opportunities.domain import DevelopmentStage, OpportunityStatus, OpportunityType, RoleSought
from matchmaking.tables import SLUG, Base, Strict, UtcDatetime, clean_list, json_column, new_id, timestamp_column


class Opportunity(Base, table=True):
    """A published opportunity (technology/business offer or request, R&D request, partner search)."""

    __tablename__ = "opportunity"

    id: str = SQLField(default_factory=new_id, primary_key=True, max_length=64)
    reference: str | None = SQLField(default=None, max_length=64, unique=True)
    opportunity_type: str = SQLField(max_length=32, index=True)
    title: str = SQLField(max_length=300)
    summary: str = SQLField(default="", sa_type=sa.Text)
    keywords: list[str] = json_column()
    technology_fields: list[str] = json_column()
    market_fields: list[str] = json_column()
    sectors: list[str] = json_column()
    development_stage: str | None = SQLField(default=None, max_length=32)
    country: str | None = SQLField(default=None, max_length=2)
    owner_organisation_id: str = SQLField(max_length=64, index=True)
    topic_code: str | None = SQLField(default=None, max_length=120)
    role_sought: str | None = SQLField(default=None, max_length=16)
    deadline: date | None = None
    expires_on: date
    status: str = SQLField(default=OpportunityStatus.ACTIVE.value, max_length=16, index=True)
    renewals: int = 0
    created_at: UtcDateTime = timestamp_column()
    updated_at: UtcDateTime = timestamp_column()


class OpportunityBase(Strict):
    """Fields an opportunity's owner writes."""

    title: str = Field(min_length=5, max_length=300)
    summary: str = Field(default="", max_length=5000)
    keywords: list[str] = Field(default_factory=list)
    technology_fields: list[str] = Field(default_factory=list)
    market_fields: list[str] = Field(default_factory=list)
    sectors: list[str] = Field(default_factory=list)
    development_stage: DevelopmentStage | None = None
    country: str | None = Field(default=None, description="ISO 3166-1 alpha-2 code, e.g. IT")

    @field_validator("keywords", "technology_fields", "market_fields")
    @classmethod
    def _terms(cls, v: list[str]) -> list[str]:
        return clean_list(v, "terms")

    @field_validator("sectors")
    @classmethod
    def _sectors(cls, v: list[str]) -> list[str]:
        v = [s.lower() for s in clean_list(v, "sectors", max_items=10, max_len=60)]
        for s in v:
            if not SLUG.match(s):
                raise ValueError(f"sector {s!r} must be a lower-case code such as 'biotech'")
        return v

    @field_validator("country")
    @classmethod
    def _country(cls, v: str | None) -> str | None:
        if v is None:
            return v
        if not re.fullmatch(r"[A-Za-z]{2}", v):
            raise ValueError("country must be a two-letter ISO code such as IT")
        return v.upper()


_DASHED = re.compile(r"^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$")


def _an_organisation_id(value: str) -> str:
    if not _DASHED.match(value):
        raise ValueError("an organisation's id is a UUID (membership's id), dashed or 32 hex digits")
    return value


OrganisationId = Annotated[Id, AfterValidator(_an_organisation_id)]
"""An organisation's id in a body: membership's UUID in either form, made dashed; any other text is a
422 (an owner is answered as ``format: uuid``, so it must be one)."""


class OpportunityCreate(OpportunityBase):
    """A new opportunity."""

    opportunity_type: OpportunityType
    owner_organisation_id: OrganisationId
    """Membership's id of the owner, in either form; kept dashed, as membership gives it."""
    reference: str | None = Field(default=None, min_length=1, max_length=64)
    expires_on: date | None = None
    topic_code: str | None = Field(default=None, min_length=3, max_length=120)
    role_sought: RoleSought | None = None
    deadline: date | None = None

    @model_validator(mode="after")
    def _partner_search(self) -> OpportunityCreate:
        if self.opportunity_type is OpportunityType.PARTNER_SEARCH:
            if not self.topic_code or self.role_sought is None:
                raise ValueError("a partner search needs the call's topic_code and the role_sought")
        elif self.topic_code or self.role_sought or self.deadline:
            raise ValueError("topic_code, role_sought and deadline belong to partner searches only")
        return self


class OpportunityUpdate(Strict):
    """Changes to an opportunity (every field optional)."""

    # may be left out, never null (an opportunity always has them): the schema says so and null is a 422
    title: str | SkipJsonSchema[None] = Field(default=None, min_length=5, max_length=300)
    summary: str | SkipJsonSchema[None] = Field(default=None, max_length=5000)
    keywords: list[str] | SkipJsonSchema[None] = None
    technology_fields: list[str] | SkipJsonSchema[None] = None
    market_fields: list[str] | SkipJsonSchema[None] = None
    sectors: list[str] | SkipJsonSchema[None] = None
    development_stage: DevelopmentStage | None = None
    country: str | None = None
    topic_code: str | None = Field(default=None, min_length=3, max_length=120)
    role_sought: RoleSought | None = None
    deadline: date | None = None

    @field_validator("title", "summary", "keywords", "technology_fields", "market_fields", "sectors", mode="before")
    @classmethod
    def _not_null(cls, v: object) -> object:
        if v is None:
            raise ValueError("may be left out but not set to null")
        return v

    @field_validator("keywords", "technology_fields", "market_fields")
    @classmethod
    def _terms(cls, v: list[str] | None) -> list[str] | None:
        return None if v is None else clean_list(v, "terms")

    @field_validator("sectors")
    @classmethod
    def _sectors(cls, v: list[str] | None) -> list[str] | None:
        return None if v is None else OpportunityBase._sectors(v)

    @field_validator("country")
    @classmethod
    def _country(cls, v: str | None) -> str | None:
        return OpportunityBase._country(v)


class OpportunityPublic(BaseModel):
    """An opportunity as its owner and the foundation's staff see it."""

    id: Id
    reference: str | None
    opportunity_type: str
    title: str
    summary: str
    keywords: list[str]
    technology_fields: list[str]
    market_fields: list[str]
    sectors: list[str]
    development_stage: str | None
    country: str | None
    owner_organisation_id: Id
    topic_code: str | None
    role_sought: str | None
    deadline: date | None
    expires_on: date
    status: str
    renewals: int
    created_at: UtcDatetime
    updated_at: UtcDatetime


class OpportunityAnonymous(BaseModel):
    """An opportunity as partners and the public see it: no owner, names, people or contact details."""

    id: Id
    opportunity_type: str
    title: str
    summary: str
    keywords: list[str]
    technology_fields: list[str]
    market_fields: list[str]
    sectors: list[str]
    development_stage: str | None
    country: str | None
    topic_code: str | None
    role_sought: str | None
    deadline: date | None
    expires_on: date


class RenewRequest(Strict):
    """Extend an opportunity's validity: a new expiry day or a number of months from today."""

    expires_on: date | None = None
    months: StrictInt | None = Field(default=None, ge=1, le=24)

    @model_validator(mode="after")
    def _one(self) -> RenewRequest:
        if (self.expires_on is None) == (self.months is None):
            raise ValueError("give either expires_on or months")
        return self
