"""Mailing lists: the table and its API shapes."""

from __future__ import annotations

import sqlalchemy as sa
from pydantic import Field as PField
from sqlmodel import Column, Field

from distretto_shared.conventions import Id, UtcDateTime
from newsletter.tables import Base, Strict, new_id, utcnow


class MailingListBase(Base):
    slug: str = Field(max_length=80, unique=True)
    name: str = Field(max_length=200)
    description: str = Field(default="", max_length=2000)
    visibility: str = Field(default="public", max_length=10)


class MailingList(MailingListBase, table=True):
    __tablename__ = "mailing_list"
    id: str = Field(default_factory=new_id, primary_key=True, max_length=32)
    created_at: UtcDateTime = Field(
        default_factory=utcnow, sa_column=Column(sa.DateTime(timezone=True), nullable=False)
    )


class MailingListCreate(Strict):
    slug: str = PField(pattern=r"^[a-z0-9][a-z0-9-]{0,79}$", description="lower-case letters, digits, dashes")
    name: str = PField(min_length=1, max_length=200)
    description: str = PField(default="", max_length=2000)
    visibility: str = PField(default="public", pattern=r"^(public|private)$")


class MailingListPublic(MailingListBase):
    id: Id
    created_at: UtcDateTime
    subscribers: int = 0
