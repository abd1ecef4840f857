"""The console's own tables: browser sessions and the activity feed it builds from the platform's events.

Nothing here copies another service's data beyond what the feed says in one line
(an organisation's name, a deliverable's number); no personal data is kept.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Any

from sqlalchemy import JSON, DateTime
from sqlmodel import Field, SQLModel

from distretto_shared.tables import service_registry

UTC_DT = DateTime(timezone=True)


def utcnow() -> datetime:
    return datetime.now(UTC)


class Base(SQLModel, registry=service_registry()):
    """Base of the console service's table models: its tables (and the backbone's) on its own metadata."""


class BrowserSession(Base, table=True):
    """A logged-in browser: the cookie holds a random token, the table its SHA-256 and the user's gateway token."""

    __tablename__ = "browser_session"

    id: str = Field(primary_key=True, max_length=64)
    """SHA-256 (hex) of the cookie's value: a leaked table does not give working cookies."""
    gateway_token: str = Field(max_length=4000)
    email: str = Field(default="", max_length=254)
    role: str = Field(max_length=20)
    organisation_id: str | None = Field(default=None, max_length=64)
    created_at: datetime = Field(default_factory=utcnow, sa_type=UTC_DT)
    last_seen: datetime = Field(default_factory=utcnow, sa_type=UTC_DT)
    expires_at: datetime = Field(sa_type=UTC_DT, index=True)
    """When the gateway token expires: the session ends then at the latest."""


class Activity(Base, table=True):
    """One platform event, as the feed tells it (``kind`` + ``params``, put into words per language on display)."""

    __tablename__ = "activity"

    id: int | None = Field(default=None, primary_key=True)
    at: datetime = Field(default_factory=utcnow, sa_type=UTC_DT, index=True)
    kind: str = Field(max_length=60)
    subject: str = Field(default="", max_length=64)
    audience: str = Field(default="staff", max_length=10)
    """``public`` (anyone, e.g. the district figures) or ``staff``."""
    params: dict[str, Any] = Field(default_factory=dict, sa_type=JSON)
