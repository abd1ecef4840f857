"""A project's table and API shapes: ``ProjectBase`` (fields shared by the table and the API),
``Project`` (the table), ``ProjectCreate`` / ``ProjectUpdate`` (input, with the vocabularies as enums
so bad values get a clear 422) and ``ProjectPublic`` (output)."""

from __future__ import annotations

from typing import Any

from pydantic import field_validator, model_validator
from sqlalchemy import Column, Text
from sqlmodel import Field

from distretto_shared.conventions import Id, IsoDate, StrictFloat, UtcDateTime
from projects.tables import Base, as_utc, clean_list, json_list_field, new_id, timestamp_field
from projects.vocabulary import THEMATIC_AREAS, FoundationRole, ProjectStatus, ProjectStatusIn


class ProjectBase(Base):
    """Fields of a project (CORDIS fields plus the foundation's own)."""

    cordis_id: str | None = Field(default=None, max_length=20, description="CORDIS project id (grant number)")
    acronym: str = Field(min_length=1, max_length=100)
    title: str = Field(min_length=1, max_length=1000)
    status: str = Field(default=ProjectStatus.PLANNED.value, max_length=20)
    start_date: IsoDate | None = None
    end_date: IsoDate | None = None
    total_cost: StrictFloat | None = Field(default=None, ge=0, description="null = not declared (lump-sum grants)")
    ec_max_contribution: StrictFloat | None = Field(default=None, ge=0)
    framework_programme: str | None = Field(default=None, max_length=50, description="e.g. HORIZON, H2020")
    funding_scheme: str | None = Field(default=None, max_length=100, description="e.g. HORIZON-RIA, HORIZON-EIC")
    legal_basis: str | None = Field(default=None, max_length=100)
    master_call: str | None = Field(default=None, max_length=200)
    sub_call: str | None = Field(default=None, max_length=200)
    ec_signature_date: IsoDate | None = None
    topics: list[str] = json_list_field()
    objective: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))
    keywords: list[str] = json_list_field()
    foundation_role: str = Field(default=FoundationRole.NONE.value, max_length=20)
    thematic_areas: list[str] = json_list_field()
    notes: str = Field(default="", sa_column=Column(Text, nullable=False, default=""))


class Project(ProjectBase, table=True):
    """A project the foundation or its members take part in."""

    __tablename__ = "project"

    id: str = Field(default_factory=new_id, primary_key=True, max_length=32)
    cordis_id: str | None = Field(default=None, max_length=20, unique=True, index=True)
    created_at: UtcDateTime = timestamp_field()
    updated_at: UtcDateTime = timestamp_field()


class _ProjectChecks(Base):
    @field_validator("thematic_areas", check_fields=False)
    @classmethod
    def _areas(cls, v: list[str] | None) -> list[str] | None:
        if v is None:
            return v
        v = clean_list(v)
        unknown = [a for a in v if a not in THEMATIC_AREAS]
        if unknown:
            raise ValueError(f"unknown thematic area(s) {unknown}; known: {', '.join(THEMATIC_AREAS)}")
        return v

    @field_validator("topics", "keywords", check_fields=False)
    @classmethod
    def _lists(cls, v: list[str] | None) -> list[str] | None:
        return None if v is None else clean_list(v)

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

    status: ProjectStatusIn = ProjectStatus.PLANNED
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
    status: ProjectStatusIn | None = None
    start_date: IsoDate | None = None
    end_date: IsoDate | None = None
    total_cost: StrictFloat | None = Field(default=None, ge=0)
    ec_max_contribution: StrictFloat | None = Field(default=None, ge=0)
    framework_programme: str | None = Field(default=None, max_length=50)
    funding_scheme: str | None = Field(default=None, max_length=100)
    legal_basis: str | None = Field(default=None, max_length=100)
    master_call: str | None = Field(default=None, max_length=200)
    sub_call: str | None = Field(default=None, max_length=200)
    ec_signature_date: IsoDate | None = None
    topics: list[str] | None = None
    objective: str | None = Field(default=None, max_length=20000)
    keywords: list[str] | None = None
    foundation_role: FoundationRole | None = None
    thematic_areas: list[str] | None = None
    notes: str | None = Field(default=None, max_length=5000)


class ProjectPublic(ProjectBase):
    """A project as the API shows it."""

    id: Id
    created_at: UtcDateTime
    updated_at: UtcDateTime
    member_organisation_ids: list[str] = []

    _tz = field_validator("created_at", "updated_at")(as_utc)
