"""Tables of the projects service and their API shapes.

Each family: ``XBase`` (fields shared by the table and the API), ``X``
(the table), ``XCreate`` / ``XUpdate`` (input, with the vocabularies as
enums so bad values get a clear 422) and ``XPublic`` (output).
Vocabulary columns are plain strings in the database (no database enum
types: adding a value must not need a migration).
"""

from __future__ import annotations

import re
from datetime import UTC, date, datetime
from typing import Any
from uuid import uuid4

from pydantic import field_validator, model_validator
from sqlalchemy import JSON, Column, DateTime, ForeignKey, String, Text, UniqueConstraint
from sqlmodel import Field, SQLModel

from distretto_shared.conventions import StrictFloat, StrictInt, UtcDateTime
from distretto_shared.tables import service_registry
from projects.domain import (
    THEMATIC_AREAS,
    DeliverableStatus,
    DeliverableType,
    Dissemination,
    FoundationRole,
    MilestoneStatus,
    ParticipantRole,
    ProjectStatus,
)


def new_id() -> str:
    """A fresh entity id."""
    return uuid4().hex


def utcnow() -> datetime:
    """The current UTC time."""
    return datetime.now(UTC)


def _ts() -> Any:
    return Field(default_factory=utcnow, sa_column=Column(DateTime(timezone=True), nullable=False))


def _json_list() -> Any:
    return Field(default_factory=list, sa_column=Column(JSON, nullable=False))


def _project_fk() -> Any:
    return Field(sa_column=Column(String(32), ForeignKey("project.id", ondelete="CASCADE"), nullable=False, index=True))


def _clean_list(values: list[str]) -> list[str]:
    out: list[str] = []
    for v in values:
        v = v.strip()
        if v and v not in out:
            out.append(v)
    return out


# -- projects ----------------------------------------------------------------


class Base(SQLModel, registry=service_registry()):
    """Base of the projects service's table models: its tables (and the backbone's) on its own metadata."""


class ProjectBase(Base):
    """Fields of a project (CORDIS fields plus the foundation's own)."""

    cordis_id: str | None = Field(default=None, max_length=20, description="CORDIS project id (grant number)")
    acronym: str = Field(min_length=1, max_length=100)
    title: str = Field(min_length=1, max_length=1000)
    status: str = Field(default=ProjectStatus.PLANNED.value, max_length=20)
    start_date: date | None = None
    end_date: date | None = None
    total_cost: StrictFloat | None = Field(default=None, ge=0, description="null = not declared (lump-sum grants)")
    ec_max_contribution: StrictFloat | None = Field(default=None, ge=0)
    framework_programme: str | None = Field(default=None, max_length=50, description="e.g. HORIZON, H2020")
    funding_scheme: str | None = Field(default=None, max_length=100, description="e.g. HORIZON-RIA, HORIZON-EIC")
    legal_basis: str | None = Field(default=None, max_length=100)
    master_call: str | None = Field(default=None, max_length=200)
    sub_call: str | None = Field(default=None, max_length=200)
    ec_signature_date: date | None = None
    topics: list[str] = _json_list()
    objective: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))
    keywords: list[str] = _json_list()
    foundation_role: str = Field(default=FoundationRole.NONE.value, max_length=20)
    thematic_areas: list[str] = _json_list()
    notes: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))


class Project(ProjectBase, table=True):
    """A project the foundation or its members take part in."""

    __tablename__ = "project"

    id: str = Field(default_factory=new_id, primary_key=True, max_length=32)
    cordis_id: str | None = Field(default=None, max_length=20, unique=True, index=True)
    created_at: UtcDateTime = _ts()
    updated_at: UtcDateTime = _ts()


class _ProjectChecks(Base):
    @field_validator("thematic_areas", check_fields=False)
    @classmethod
    def _areas(cls, v: list[str] | None) -> list[str] | None:
        if v is None:
            return v
        v = _clean_list(v)
        unknown = [a for a in v if a not in THEMATIC_AREAS]
        if unknown:
            raise ValueError(f"unknown thematic area(s) {unknown}; known: {', '.join(THEMATIC_AREAS)}")
        return v

    @field_validator("topics", "keywords", check_fields=False)
    @classmethod
    def _lists(cls, v: list[str] | None) -> list[str] | None:
        return None if v is None else _clean_list(v)

    @field_validator("acronym", "title", check_fields=False)
    @classmethod
    def _not_blank(cls, v: str | None) -> str | None:
        if v is not None and not v.strip():
            raise ValueError("must not be blank")
        return v.strip() if v is not None else v

    @model_validator(mode="after")
    def _dates(self) -> Any:
        start, end = getattr(self, "start_date", None), getattr(self, "end_date", None)
        if start and end and end < start:
            raise ValueError("end_date is before start_date")
        return self


class ProjectCreate(_ProjectChecks, ProjectBase):
    """Input to register a project."""

    status: ProjectStatus = ProjectStatus.PLANNED
    foundation_role: FoundationRole = FoundationRole.NONE
    topics: list[str] = []
    keywords: list[str] = []
    thematic_areas: list[str] = []
    objective: str = Field(default="", max_length=20000)
    notes: str = Field(default="", max_length=5000)


class ProjectUpdate(_ProjectChecks):
    """Input to change a project: only the fields given change."""

    cordis_id: str | None = Field(default=None, max_length=20)
    acronym: str | None = Field(default=None, min_length=1, max_length=100)
    title: str | None = Field(default=None, min_length=1, max_length=1000)
    status: ProjectStatus | None = None
    start_date: date | None = None
    end_date: date | None = None
    total_cost: StrictFloat | None = Field(default=None, ge=0)
    ec_max_contribution: StrictFloat | None = Field(default=None, ge=0)
    framework_programme: str | None = Field(default=None, max_length=50)
    funding_scheme: str | None = Field(default=None, max_length=100)
    legal_basis: str | None = Field(default=None, max_length=100)
    master_call: str | None = Field(default=None, max_length=200)
    sub_call: str | None = Field(default=None, max_length=200)
    ec_signature_date: date | None = None
    topics: list[str] | None = None
    objective: str | None = Field(default=None, max_length=20000)
    keywords: list[str] | None = None
    foundation_role: FoundationRole | None = None
    thematic_areas: list[str] | None = None
    notes: str | None = Field(default=None, max_length=5000)


def _utc(v: datetime) -> datetime:
    # SQLite hands timestamps back without their zone; they were written in UTC.
    return v.replace(tzinfo=UTC) if v.tzinfo is None else v


class ProjectPublic(ProjectBase):
    """A project as the API shows it."""

    id: str
    created_at: UtcDateTime
    updated_at: UtcDateTime
    member_organisation_ids: list[str] = []

    _tz = field_validator("created_at", "updated_at")(_utc)


# -- consortium --------------------------------------------------------------


class ParticipantBase(Base):
    """A consortium member of a project."""

    name: str = Field(min_length=1, max_length=500)
    short_name: str | None = Field(default=None, max_length=100)
    cordis_organisation_id: str | None = Field(default=None, max_length=20, description="PIC / CORDIS organisationID")
    vat_number: str | None = Field(default=None, max_length=40)
    role: str = Field(default=ParticipantRole.PARTICIPANT.value, max_length=30)
    country: str | None = Field(
        default=None,
        max_length=2,
        schema_extra={"pattern": r"^[A-Za-z]{2}$"},
        description="ISO 3166 alpha-2 (EL for Greece, UK)",
    )
    organisation_type: str | None = Field(default=None, max_length=10, description="HES, REC, PRC, PUB, OTH")
    sme: bool | None = None
    city: str | None = Field(default=None, max_length=200)
    ec_contribution: StrictFloat | None = Field(default=None, ge=0)
    net_ec_contribution: StrictFloat | None = Field(default=None, ge=0)
    total_cost: StrictFloat | None = Field(default=None, ge=0)


class Participant(ParticipantBase, table=True):
    """A participant row."""

    __tablename__ = "participant"

    id: str = Field(default_factory=new_id, primary_key=True, max_length=32)
    project_id: str = _project_fk()
    organisation_id: str | None = Field(default=None, max_length=64, index=True)
    """The member organisation this participant is (from the membership events)."""
    is_foundation: bool = False
    name_key: str = Field(default="", max_length=500, index=True)
    vat_key: str | None = Field(default=None, max_length=40, index=True)
    created_at: UtcDateTime = _ts()
    updated_at: UtcDateTime = _ts()


class _ParticipantChecks(Base):
    @field_validator("country", check_fields=False)
    @classmethod
    def _country(cls, v: str | None) -> str | None:
        if v is None:
            return v
        v = v.strip().upper()
        if len(v) != 2 or not v.isalpha():
            raise ValueError("country must be a two-letter code such as IT")
        return v

    @field_validator("name", check_fields=False)
    @classmethod
    def _name(cls, v: str | None) -> str | None:
        if v is not None and not v.strip():
            raise ValueError("must not be blank")
        return v.strip() if v is not None else v


class ParticipantCreate(_ParticipantChecks, ParticipantBase):
    """Input to add a participant."""

    role: ParticipantRole = ParticipantRole.PARTICIPANT


class ParticipantUpdate(_ParticipantChecks):
    """Input to change a participant."""

    name: str | None = Field(default=None, min_length=1, max_length=500)
    short_name: str | None = Field(default=None, max_length=100)
    cordis_organisation_id: str | None = Field(default=None, max_length=20)
    vat_number: str | None = Field(default=None, max_length=40)
    role: ParticipantRole | None = None
    country: str | None = Field(default=None, max_length=2, schema_extra={"pattern": r"^[A-Za-z]{2}$"})
    organisation_type: str | None = Field(default=None, max_length=10)
    sme: bool | None = None
    city: str | None = Field(default=None, max_length=200)
    ec_contribution: StrictFloat | None = Field(default=None, ge=0)
    net_ec_contribution: StrictFloat | None = Field(default=None, ge=0)
    total_cost: StrictFloat | None = Field(default=None, ge=0)


class ParticipantPublic(ParticipantBase):
    """A participant as the API shows it."""

    id: str
    project_id: str
    organisation_id: str | None
    is_foundation: bool
    created_at: UtcDateTime
    updated_at: UtcDateTime

    _tz = field_validator("created_at", "updated_at")(_utc)


# -- work plan ---------------------------------------------------------------


class WorkPackageBase(Base):
    """A work package."""

    number: StrictInt = Field(ge=1, le=99)
    title: str = Field(min_length=1, max_length=500)
    lead_participant_id: str | None = Field(default=None, max_length=32)
    start_month: StrictInt = Field(ge=1, le=240)
    end_month: StrictInt = Field(ge=1, le=240)
    person_months: StrictFloat | None = Field(default=None, ge=0)


class WorkPackage(WorkPackageBase, table=True):
    """A work package row."""

    __tablename__ = "work_package"
    __table_args__ = (UniqueConstraint("project_id", "number", name="uq_work_package_number"),)

    id: str = Field(default_factory=new_id, primary_key=True, max_length=32)
    project_id: str = _project_fk()
    lead_participant_id: str | None = Field(
        default=None, sa_column=Column(String(32), ForeignKey("participant.id", ondelete="SET NULL"), nullable=True)
    )


def _months_ordered(obj: Any) -> Any:
    start, end = getattr(obj, "start_month", None), getattr(obj, "end_month", None)
    if start is not None and end is not None and end < start:
        raise ValueError("end_month is before start_month")
    return obj


class WorkPackageCreate(WorkPackageBase):
    """Input to add a work package."""

    _order = model_validator(mode="after")(_months_ordered)


class WorkPackageUpdate(Base):
    """Input to change a work package."""

    title: str | None = Field(default=None, min_length=1, max_length=500)
    lead_participant_id: str | None = Field(default=None, max_length=32)
    start_month: StrictInt | None = Field(default=None, ge=1, le=240)
    end_month: StrictInt | None = Field(default=None, ge=1, le=240)
    person_months: StrictFloat | None = Field(default=None, ge=0)


class WorkPackagePublic(WorkPackageBase):
    """A work package as the API shows it."""

    id: str
    project_id: str


DELIVERABLE_NUMBER = r"^D\d{1,2}\.\d{1,3}$"
MILESTONE_NUMBER = r"^MS?\d{1,3}$"


class DeliverableBase(Base):
    """A deliverable, due in a project month."""

    number: str = Field(
        max_length=10, schema_extra={"pattern": r"^\s*[Dd]\d{1,2}\.\d{1,3}\s*$"}, description="D<wp>.<n>, e.g. D1.1"
    )
    title: str = Field(min_length=1, max_length=500)
    type: str = Field(default=DeliverableType.R.value, max_length=10)
    dissemination: str = Field(default=Dissemination.PU.value, max_length=10)
    work_package: StrictInt | None = Field(default=None, ge=1, le=99, description="work package number")
    due_month: StrictInt = Field(ge=1, le=240, description="M1 = the project's start month")
    description: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))


class Deliverable(DeliverableBase, table=True):
    """A deliverable row."""

    __tablename__ = "deliverable"
    __table_args__ = (UniqueConstraint("project_id", "number", name="uq_deliverable_number"),)

    id: str = Field(default_factory=new_id, primary_key=True, max_length=32)
    project_id: str = _project_fk()
    due_date: date | None = Field(default=None, index=True)
    status: str = Field(default=DeliverableStatus.PLANNED.value, max_length=20, index=True)
    submitted_on: date | None = None
    accepted_on: date | None = None
    created_at: UtcDateTime = _ts()
    updated_at: UtcDateTime = _ts()


class DeliverableCreate(DeliverableBase):
    """Input to add a deliverable."""

    number: str = Field(
        max_length=10, schema_extra={"pattern": r"^\s*[Dd]\d{1,2}\.\d{1,3}\s*$"}, description="D<wp>.<n>, e.g. D1.1"
    )
    type: DeliverableType = DeliverableType.R
    dissemination: Dissemination = Dissemination.PU
    description: str = Field(default="", max_length=5000)

    @field_validator("number")
    @classmethod
    def _number(cls, v: str) -> str:
        v = v.strip().upper()
        if not re.fullmatch(DELIVERABLE_NUMBER, v):
            raise ValueError("a deliverable number looks like D1.1 (D<work package>.<n>)")
        return v


class DeliverableUpdate(Base):
    """Input to change a deliverable's plan (status changes have their own routes)."""

    title: str | None = Field(default=None, min_length=1, max_length=500)
    type: DeliverableType | None = None
    dissemination: Dissemination | None = None
    work_package: StrictInt | None = Field(default=None, ge=1, le=99)
    due_month: StrictInt | None = Field(default=None, ge=1, le=240)
    description: str | None = Field(default=None, max_length=5000)


class DeliverablePublic(DeliverableBase):
    """A deliverable as the API shows it."""

    id: str
    project_id: str
    due_date: date | None
    status: str
    submitted_on: date | None
    accepted_on: date | None


class DeliverableSubmit(Base):
    """Input to submit a deliverable."""

    submitted_on: date | None = None


class DeliverableAccept(Base):
    """Input to record the Commission's acceptance of a deliverable."""

    accepted_on: date | None = None


class MilestoneBase(Base):
    """A milestone, due in a project month."""

    number: str = Field(
        max_length=10, schema_extra={"pattern": r"^\s*[Mm][Ss]?\d{1,3}\s*$"}, description="MS<n>, e.g. MS3"
    )
    title: str = Field(min_length=1, max_length=500)
    work_package: StrictInt | None = Field(default=None, ge=1, le=99)
    due_month: StrictInt = Field(ge=1, le=240)
    means_of_verification: str = Field(default="", max_length=2000)


class Milestone(MilestoneBase, table=True):
    """A milestone row."""

    __tablename__ = "milestone"
    __table_args__ = (UniqueConstraint("project_id", "number", name="uq_milestone_number"),)

    id: str = Field(default_factory=new_id, primary_key=True, max_length=32)
    project_id: str = _project_fk()
    due_date: date | None = None
    status: str = Field(default=MilestoneStatus.PLANNED.value, max_length=20)
    reached_on: date | None = None


class MilestoneCreate(MilestoneBase):
    """Input to add a milestone."""

    number: str = Field(
        max_length=10, schema_extra={"pattern": r"^\s*[Mm][Ss]?\d{1,3}\s*$"}, description="MS<n>, e.g. MS3"
    )

    @field_validator("number")
    @classmethod
    def _number(cls, v: str) -> str:
        v = v.strip().upper()
        if not re.fullmatch(MILESTONE_NUMBER, v):
            raise ValueError("a milestone number looks like MS3")
        return v


class MilestoneUpdate(Base):
    """Input to change a milestone's plan."""

    title: str | None = Field(default=None, min_length=1, max_length=500)
    work_package: StrictInt | None = Field(default=None, ge=1, le=99)
    due_month: StrictInt | None = Field(default=None, ge=1, le=240)
    means_of_verification: str | None = Field(default=None, max_length=2000)


class MilestonePublic(MilestoneBase):
    """A milestone as the API shows it."""

    id: str
    project_id: str
    due_date: date | None
    status: str
    reached_on: date | None


class MilestoneReach(Base):
    """Input to record a milestone as reached."""

    reached_on: date | None = None


class ReportingPeriodBase(Base):
    """A reporting period (periodic report due 60 days after its end)."""

    number: StrictInt = Field(ge=1, le=20)
    start_month: StrictInt = Field(ge=1, le=240)
    end_month: StrictInt = Field(ge=1, le=240)


class ReportingPeriod(ReportingPeriodBase, table=True):
    """A reporting period row."""

    __tablename__ = "reporting_period"
    __table_args__ = (UniqueConstraint("project_id", "number", name="uq_reporting_period_number"),)

    id: str = Field(default_factory=new_id, primary_key=True, max_length=32)
    project_id: str = _project_fk()
    start_date: date | None = None
    end_date: date | None = None
    report_due_date: date | None = None


class ReportingPeriodCreate(ReportingPeriodBase):
    """Input to add a reporting period."""

    _order = model_validator(mode="after")(_months_ordered)


class ReportingPeriodUpdate(Base):
    """Input to change a reporting period."""

    start_month: StrictInt | None = Field(default=None, ge=1, le=240)
    end_month: StrictInt | None = Field(default=None, ge=1, le=240)


class ReportingPeriodPublic(ReportingPeriodBase):
    """A reporting period as the API shows it."""

    id: str
    project_id: str
    start_date: date | None
    end_date: date | None
    report_due_date: date | None


# -- deadline engine ---------------------------------------------------------


class DeliverableNotice(Base, table=True):
    """A deadline notice already emitted: at most one per (deliverable, threshold), ever."""

    __tablename__ = "deliverable_notice"
    __table_args__ = (UniqueConstraint("deliverable_id", "threshold", name="uq_deliverable_notice"),)

    id: int | None = Field(default=None, primary_key=True)
    deliverable_id: str = Field(
        sa_column=Column(String(32), ForeignKey("deliverable.id", ondelete="CASCADE"), nullable=False)
    )
    threshold: str = Field(max_length=30)
    due_date: date
    event_id: str = Field(max_length=64)
    emitted_at: UtcDateTime = _ts()


# -- read model of member organisations --------------------------------------


class MemberOrganisation(Base, table=True):
    """What this service keeps of the membership register (fed by membership events)."""

    __tablename__ = "member_organisation"

    organisation_id: str = Field(primary_key=True, max_length=64)
    name: str = Field(max_length=500)
    name_key: str = Field(max_length=500, index=True)
    vat_number: str | None = Field(default=None, max_length=40)
    vat_key: str | None = Field(default=None, max_length=40, index=True)
    kind: str = Field(default="other", max_length=40)
    country: str = Field(default="IT", max_length=2)
    status: str = Field(default="applied", max_length=20)
    updated_at: UtcDateTime = _ts()


class MemberOrganisationPublic(Base):
    """A member organisation as this service knows it."""

    organisation_id: str
    name: str
    vat_number: str | None
    kind: str
    country: str
    status: str


# -- import and portfolio ----------------------------------------------------


class CordisImportText(Base):
    """A CORDIS import given as text: the two CSV files' contents."""

    project_csv: str = Field(min_length=1, description="content of project.csv")
    organization_csv: str = Field(default="", description="content of organization.csv (may be empty)")


class CordisImportResult(Base):
    """What an import did."""

    projects_created: int = 0
    projects_updated: int = 0
    projects_unchanged: int = 0
    participants_created: int = 0
    participants_updated: int = 0
    participants_linked: int = 0
    project_ids: list[str] = []
    warnings: list[dict[str, Any]] = []
    """Cells a spreadsheet would run as formulas (file, line, column, warning): imported as text."""


class BucketPublic(Base):
    """Count and budgets of a group of projects."""

    projects: int
    total_cost: float
    ec_max_contribution: float


class PortfolioPublic(Base):
    """Portfolio figures."""

    overall: BucketPublic
    by_programme: dict[str, BucketPublic]
    by_funding_scheme: dict[str, BucketPublic]
    by_thematic_area: dict[str, BucketPublic]
    by_status: dict[str, BucketPublic]
    by_foundation_role: dict[str, BucketPublic]
    foundation_projects: int
    foundation_ec_contribution: float


class DeadlineScanResult(Base):
    """What a deadline scan emitted."""

    today: date
    due_soon: int
    overdue: int
