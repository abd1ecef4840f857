"""Lines kept from other services' events for the next digest."""

from __future__ import annotations

from datetime import date

import sqlalchemy as sa
from sqlmodel import Column, Field

from distretto_shared.conventions import UtcDateTime
from newsletter.tables import Base, new_id, utcnow


class DigestItem(Base, table=True):
    """Something worth a line in the next digest, kept from another service's event."""

    __tablename__ = "digest_item"
    id: str = Field(default_factory=new_id, primary_key=True, max_length=32)
    kind: str = Field(max_length=30)
    ref: str = Field(max_length=200, unique=True)
    title: str = Field(max_length=500)
    detail: str = Field(default="", max_length=2000)
    occurred_on: date | None = None
    sectors: list[str] = Field(default_factory=list, sa_column=Column(sa.JSON, nullable=False, server_default="[]"))
    """The sectors the line is about (a new member's, an opportunity's): a segment's digest keeps it by them."""
    campaign_id: str | None = Field(default=None, max_length=32, index=True)
    created_at: UtcDateTime = Field(
        default_factory=utcnow, sa_column=Column(sa.DateTime(timezone=True), nullable=False)
    )
