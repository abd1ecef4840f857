"""Work plan tables and API shapes: work packages, deliverables, milestones, reporting periods."""

from __future__ import annotations

import re
from datetime import date
from typing import Any

from pydantic import field_validator, model_validator
from sqlalchemy import Column, ForeignKey, String, Text, UniqueConstraint
from sqlmodel import Field

from distretto_shared.conventions import Id, IsoDate, StrictFloat, StrictInt, UtcDateTime
from projects.tables import Base, StoredId, new_id, project_fk, timestamp_field
from projects.vocabulary import (
    DeliverableStatus,
    DeliverableType,
    DeliverableTypeIn,
    Dissemination,
    DisseminationIn,
    MilestoneStatus,
)


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
    project_id: str = project_fk()
    lead_participant_id: str | None = Field(
        default=None, sa_column=Column(String(32), ForeignKey("participant.id", ondelete="SET NULL"), nullable=True)
    )


def months_ordered(obj: Any) -> Any:
    start, end = getattr(obj, "start_month", None), getattr(obj, "end_month", None)
    if start is not None and end is not None and end < start:
        raise ValueError("end_month is before start_month")
    return obj


class WorkPackageCreate(WorkPackageBase):
    """Input to add a work package."""

    lead_participant_id: StoredId | None = None

    _order = model_validator(mode="after")(months_ordered)


class WorkPackageUpdate(Base):
    """Input to change a work package."""

    title: str | None = Field(default=None, min_length=1, max_length=500)
    lead_participant_id: StoredId | None = None
    start_month: StrictInt | None = Field(default=None, ge=1, le=240)
    end_month: StrictInt | None = Field(default=None, ge=1, le=240)
    person_months: StrictFloat | None = Field(default=None, ge=0)


class WorkPackagePublic(WorkPackageBase):
    """A work package as the API shows it."""

    id: Id
    project_id: Id
    lead_participant_id: Id | None


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
    project_id: str = project_fk()
    due_date: date | None = Field(default=None, index=True)
    status: str = Field(default=DeliverableStatus.PLANNED.value, max_length=20, index=True)
    submitted_on: date | None = None
    accepted_on: date | None = None
    created_at: UtcDateTime = timestamp_field()
    updated_at: UtcDateTime = timestamp_field()


class DeliverableCreate(DeliverableBase):
    """Input to add a deliverable."""

    number: str = Field(
        max_length=10, schema_extra={"pattern": r"^\s*[Dd]\d{1,2}\.\d{1,3}\s*$"}, description="D<wp>.<n>, e.g. D1.1"
    )
    type: DeliverableTypeIn = DeliverableType.R
    dissemination: DisseminationIn = Dissemination.PU
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
    type: DeliverableTypeIn | None = None
    dissemination: DisseminationIn | None = None
    work_package: StrictInt | None = Field(default=None, ge=1, le=99)
    due_month: StrictInt | None = Field(default=None, ge=1, le=240)
    description: str | None = Field(default=None, max_length=5000)


class DeliverablePublic(DeliverableBase):
    """A deliverable as the API shows it."""

    id: Id
    project_id: Id
    due_date: date | None
    status: str
    submitted_on: date | None
    accepted_on: date | None


class DeliverableSubmit(Base):
    """Input to submit a deliverable."""

    submitted_on: IsoDate | None = None


class DeliverableAccept(Base):
    """Input to record the Commission's acceptance of a deliverable."""

    accepted_on: IsoDate | None = None


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
    project_id: str = project_fk()
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

    id: Id
    project_id: Id
    due_date: date | None
    status: str
    reached_on: date | None


class MilestoneReach(Base):
    """Input to record a milestone as reached."""

    reached_on: IsoDate | None = None


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
    project_id: str = project_fk()
    start_date: date | None = None
    end_date: date | None = None
    report_due_date: date | None = None


class ReportingPeriodCreate(ReportingPeriodBase):
    """Input to add a reporting period."""

    _order = model_validator(mode="after")(months_ordered)


class ReportingPeriodUpdate(Base):
    """Input to change a reporting period."""

    start_month: StrictInt | None = Field(default=None, ge=1, le=240)
    end_month: StrictInt | None = Field(default=None, ge=1, le=240)


class ReportingPeriodPublic(ReportingPeriodBase):
    """A reporting period as the API shows it."""

    id: Id
    project_id: Id
    start_date: date | None
    end_date: date | None
    report_due_date: date | None
