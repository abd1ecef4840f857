"""Competence profiles: the organisations and projects other services describe (local read models)."""

from __future__ import annotations

import sqlalchemy as sa
from pydantic import BaseModel
from sqlmodel import Field as SQLField

from distretto_shared.conventions import Id, UtcDateTime
from matchmaking.tables import Base, json_column, timestamp_column


class Organisation(Base, table=True):
    """A member organisation as membership describes it (local read model)."""

    __tablename__ = "organisation"

    organisation_id: str = SQLField(primary_key=True, max_length=64)
    name: str = SQLField(max_length=300)
    kind: str = SQLField(max_length=32)
    status: str = SQLField(max_length=16)
    sectors: list[str] = json_column()
    country: str = SQLField(default="IT", max_length=2)
    website: str | None = SQLField(default=None, max_length=300)
    """Its web address (from membership): the website's name is one of the forms anonymisation removes."""
    description: str = SQLField(default="", sa_type=sa.Text)
    competences: list[str] = json_column()
    keywords: list[str] = json_column()
    updated_at: UtcDateTime = timestamp_column()


class Project(Base, table=True):
    """An EU project as the projects service describes it (local read model)."""

    __tablename__ = "project"

    project_id: str = SQLField(primary_key=True, max_length=64)
    acronym: str = SQLField(default="", max_length=100)
    title: str = SQLField(default="", sa_type=sa.Text)
    objective: str = SQLField(default="", sa_type=sa.Text)
    topics: list[str] = json_column()
    keywords: list[str] = json_column()
    member_organisation_ids: list[str] = json_column()
    updated_at: UtcDateTime = timestamp_column()


class Participation(Base, table=True):
    """A member organisation takes part in a project (from the consortium's participant events)."""

    __tablename__ = "participation"

    project_id: str = SQLField(primary_key=True, max_length=64)
    organisation_id: str = SQLField(primary_key=True, max_length=64, index=True)


class OrganisationPublic(BaseModel):
    """A competence profile: the organisation's data and the EU projects it takes part in."""

    organisation_id: Id
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
