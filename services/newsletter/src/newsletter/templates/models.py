"""Mail templates: the table and its API shapes."""

from __future__ import annotations

import sqlalchemy as sa
from pydantic import Field as PField
from sqlmodel import Column, Field

from distretto_shared.conventions import Id, UtcDateTime
from newsletter.tables import Base, Strict, new_id, utcnow


class TemplateBase(Base):
    name: str = Field(max_length=200, unique=True)
    subject: str = Field(max_length=300)
    body_html: str = Field(sa_type=sa.Text)
    body_text: str = Field(sa_type=sa.Text)


class Template(TemplateBase, table=True):
    __tablename__ = "template"
    id: str = Field(default_factory=new_id, primary_key=True, max_length=32)
    created_at: UtcDateTime = Field(
        default_factory=utcnow, sa_column=Column(sa.DateTime(timezone=True), nullable=False)
    )
    updated_at: UtcDateTime = Field(
        default_factory=utcnow, sa_column=Column(sa.DateTime(timezone=True), nullable=False)
    )


class TemplateCreate(Strict):
    name: str = PField(min_length=1, max_length=200)
    subject: str = PField(min_length=1, max_length=300)
    body_html: str = PField(min_length=1, max_length=500_000)
    body_text: str = PField(min_length=1, max_length=500_000)


class TemplateUpdate(Strict):
    name: str | None = PField(default=None, min_length=1, max_length=200)
    subject: str | None = PField(default=None, min_length=1, max_length=300)
    body_html: str | None = PField(default=None, min_length=1, max_length=500_000)
    body_text: str | None = PField(default=None, min_length=1, max_length=500_000)


class TemplatePublic(TemplateBase):
    id: Id
    created_at: UtcDateTime
    updated_at: UtcDateTime
