"""Tables of the matchmaking service and their API shapes."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, date, datetime
from typing import Annotated, Any

import sqlalchemy as sa
from pydantic import AfterValidator, AwareDatetime, BaseModel, ConfigDict, Field, field_validator, model_validator
from sqlmodel import Field as SQLField
from sqlmodel import SQLModel

from distretto_shared.conventions import StrictFloat, StrictInt, UtcDateTime
from distretto_shared.tables import service_registry
from matchmaking.domain import (
    Decision,
    DevelopmentStage,
    MatchState,
    OpportunityStatus,
    OpportunityType,
    RoleSought,
    Side,
)


def new_id() -> str:
    """A fresh id."""
    return uuid.uuid4().hex


def utcnow() -> datetime:
    """Now, in UTC."""
    return datetime.now(UTC)


def _aware(value: datetime) -> datetime:
    # SQLite hands back naive datetimes; everything stored is UTC.
    return value if value.tzinfo else value.replace(tzinfo=UTC)


UtcDatetime = Annotated[datetime, AfterValidator(_aware)]


def _json(default: Any = list) -> Any:
    return SQLField(default_factory=default, sa_column=sa.Column(sa.JSON, nullable=False))


def _ts() -> Any:
    return SQLField(default_factory=utcnow, sa_column=sa.Column(sa.DateTime(timezone=True), nullable=False))


# -- tables -----------------------------------------------------------------------------


class Base(SQLModel, registry=service_registry()):
    """Base of the matchmaking service's table models: its tables (and the backbone's) on its own metadata."""


class Opportunity(Base, table=True):
    """A published opportunity (technology/business offer or request, R&D request, partner search)."""

    __tablename__ = "opportunity"

    id: str = SQLField(default_factory=new_id, primary_key=True, max_length=64)
    reference: str | None = SQLField(default=None, max_length=64, unique=True)
    opportunity_type: str = SQLField(max_length=32, index=True)
    title: str = SQLField(max_length=300)
    summary: str = SQLField(default="", sa_type=sa.Text)
    keywords: list[str] = _json()
    technology_fields: list[str] = _json()
    market_fields: list[str] = _json()
    sectors: list[str] = _json()
    development_stage: str | None = SQLField(default=None, max_length=32)
    country: str | None = SQLField(default=None, max_length=2)
    owner_organisation_id: str = SQLField(max_length=64, index=True)
    topic_code: str | None = SQLField(default=None, max_length=120)
    role_sought: str | None = SQLField(default=None, max_length=16)
    deadline: date | None = None
    expires_on: date
    status: str = SQLField(default=OpportunityStatus.ACTIVE.value, max_length=16, index=True)
    renewals: int = 0
    embedding: bytes | None = SQLField(default=None, sa_column=sa.Column(sa.LargeBinary, nullable=True))
    embedded_hash: str | None = SQLField(default=None, max_length=64)
    created_at: UtcDateTime = _ts()
    updated_at: UtcDateTime = _ts()


class Organisation(Base, table=True):
    """A member organisation as membership describes it (local read model)."""

    __tablename__ = "organisation"

    organisation_id: str = SQLField(primary_key=True, max_length=64)
    name: str = SQLField(max_length=300)
    kind: str = SQLField(max_length=32)
    status: str = SQLField(max_length=16)
    sectors: list[str] = _json()
    country: str = SQLField(default="IT", max_length=2)
    description: str = SQLField(default="", sa_type=sa.Text)
    competences: list[str] = _json()
    keywords: list[str] = _json()
    embedding: bytes | None = SQLField(default=None, sa_column=sa.Column(sa.LargeBinary, nullable=True))
    embedded_hash: str | None = SQLField(default=None, max_length=64)
    updated_at: UtcDateTime = _ts()


class Project(Base, table=True):
    """An EU project as the projects service describes it (local read model)."""

    __tablename__ = "project"

    project_id: str = SQLField(primary_key=True, max_length=64)
    acronym: str = SQLField(default="", max_length=100)
    title: str = SQLField(default="", sa_type=sa.Text)
    objective: str = SQLField(default="", sa_type=sa.Text)
    topics: list[str] = _json()
    keywords: list[str] = _json()
    member_organisation_ids: list[str] = _json()
    updated_at: UtcDateTime = _ts()


class Participation(Base, table=True):
    """A member organisation takes part in a project (from the consortium's participant events)."""

    __tablename__ = "participation"

    project_id: str = SQLField(primary_key=True, max_length=64)
    organisation_id: str = SQLField(primary_key=True, max_length=64, index=True)


class Match(Base, table=True):
    """A proposed pairing of an opportunity with a counterpart opportunity or profile."""

    __tablename__ = "match"
    __table_args__ = (
        sa.UniqueConstraint("opportunity_id", "counterpart_type", "counterpart_id", name="uq_match_pair"),
    )

    id: str = SQLField(default_factory=new_id, primary_key=True, max_length=64)
    opportunity_id: str = SQLField(max_length=64, index=True)
    counterpart_type: str = SQLField(max_length=16)
    counterpart_id: str = SQLField(max_length=64, index=True)
    state: str = SQLField(default=MatchState.PROPOSED.value, max_length=20, index=True)
    opportunity_side: str = SQLField(default=Decision.PENDING.value, max_length=10)
    counterpart_side: str = SQLField(default=Decision.PENDING.value, max_length=10)
    score: float = 0.0
    score_parts: dict[str, Any] = _json(dict)
    explanation: dict[str, Any] = _json(dict)
    meeting_at: UtcDateTime | None = SQLField(default=None, sa_column=sa.Column(sa.DateTime(timezone=True)))
    meeting_place: str | None = SQLField(default=None, max_length=300)
    held_on: date | None = None
    created_at: UtcDateTime = _ts()
    updated_at: UtcDateTime = _ts()


class MatchFeedback(Base, table=True):
    """One side's verdict on a match: useful or not (one per side, the latest wins)."""

    __tablename__ = "match_feedback"

    match_id: str = SQLField(primary_key=True, max_length=64)
    side: str = SQLField(primary_key=True, max_length=16)
    useful: bool
    comment: str = SQLField(default="", sa_type=sa.Text)
    created_at: UtcDateTime = _ts()


# -- API shapes -------------------------------------------------------------------------

_SLUG = re.compile(r"^[a-z0-9][a-z0-9_\- ]*$")


def _clean_list(values: list[str], what: str, *, max_items: int = 30, max_len: int = 120) -> list[str]:
    out: list[str] = []
    if len(values) > max_items:
        raise ValueError(f"at most {max_items} {what}")
    for v in values:
        v = v.strip()
        if not v:
            raise ValueError(f"{what} must not be empty strings")
        if len(v) > max_len:
            raise ValueError(f"each of the {what} has at most {max_len} characters")
        if v.lower() not in (o.lower() for o in out):
            out.append(v)
    return out


class Strict(BaseModel):
    """Unknown fields are refused (a typo must not be silently ignored)."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


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
        return _clean_list(v, "terms")

    @field_validator("sectors")
    @classmethod
    def _sectors(cls, v: list[str]) -> list[str]:
        v = [s.lower() for s in _clean_list(v, "sectors", max_items=10, max_len=60)]
        for s in v:
            if not _SLUG.match(s):
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


class OpportunityCreate(OpportunityBase):
    """A new opportunity."""

    opportunity_type: OpportunityType
    owner_organisation_id: str = Field(min_length=1, max_length=64)
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

    title: str | None = Field(default=None, min_length=5, max_length=300)
    summary: str | None = Field(default=None, max_length=5000)
    keywords: list[str] | None = None
    technology_fields: list[str] | None = None
    market_fields: list[str] | None = None
    sectors: list[str] | None = None
    development_stage: DevelopmentStage | None = None
    country: str | None = None
    topic_code: str | None = Field(default=None, min_length=3, max_length=120)
    role_sought: RoleSought | None = None
    deadline: date | None = None

    @field_validator("keywords", "technology_fields", "market_fields")
    @classmethod
    def _terms(cls, v: list[str] | None) -> list[str] | None:
        return None if v is None else _clean_list(v, "terms")

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

    id: str
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
    owner_organisation_id: str
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

    id: str
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


class OrganisationPublic(BaseModel):
    """A competence profile: the organisation's data and the EU projects it takes part in."""

    organisation_id: str
    name: str
    kind: str
    status: str
    sectors: list[str]
    country: str
    description: str
    competences: list[str]
    keywords: list[str]
    projects: list[str] = []
    indexed: bool = False


class ScoreParts(BaseModel):
    """How a score was made."""

    bm25: float
    bm25_normalised: float
    dense: float
    fused: float
    feedback: float


class RankedCounterpart(BaseModel):
    """One ranked result."""

    counterpart_type: str
    """opportunity or profile"""
    counterpart_id: str
    title: str
    score: float
    score_parts: ScoreParts
    explanation: dict[str, Any]


class MatchCreate(Strict):
    """Propose a match between an opportunity and a counterpart."""

    opportunity_id: str = Field(min_length=1, max_length=64)
    counterpart_type: str = Field(pattern="^(opportunity|profile)$")
    counterpart_id: str = Field(min_length=1, max_length=64)


class ProposeRequest(Strict):
    """Ask the engine for the best counterparts of an opportunity and propose them as matches."""

    limit: StrictInt = Field(default=5, ge=1, le=50)
    min_score: StrictFloat = Field(default=0.0, ge=0.0, le=2.0)
    target: str = Field(default="all", pattern="^(all|opportunities|profiles)$")


class DecisionRequest(Strict):
    """One side answers a proposed match."""

    side: Side


class MeetingRequest(Strict):
    """Schedule the meeting of an accepted match."""

    scheduled_at: AwareDatetime
    """With its offset (``2025-05-01T10:00:00Z``): a time without one is refused."""
    place: str | None = Field(default=None, max_length=300)


class MeetingHeldRequest(Strict):
    """Record that the meeting took place."""

    held_on: date | None = None


class FeedbackRequest(Strict):
    """Was this match useful to you?"""

    side: Side
    useful: bool
    comment: str = Field(default="", max_length=2000)


class MatchPublic(BaseModel):
    """A match and where it stands."""

    id: str
    opportunity_id: str
    counterpart_type: str
    counterpart_id: str
    state: str
    opportunity_side: str
    counterpart_side: str
    score: float
    score_parts: dict[str, Any]
    explanation: dict[str, Any]
    meeting_at: UtcDatetime | None
    meeting_place: str | None
    held_on: date | None
    feedback: dict[str, bool] = {}
    created_at: UtcDatetime
    updated_at: UtcDatetime


class IndexStats(BaseModel):
    """What the ranking engine holds."""

    opportunities: int
    profiles: int
    bm25_main_rows: int
    bm25_delta_rows: int
