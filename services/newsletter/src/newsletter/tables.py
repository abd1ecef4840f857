"""The one ``Base`` of the newsletter's tables, and what every aggregate's models share.

Every aggregate's table models (``newsletter/<aggregate>/models.py``) derive from :class:`Base`,
so the service keeps one MetaData (its tables and the backbone's); :mod:`newsletter.models`
imports them all.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any
from uuid import uuid4

import sqlalchemy as sa
from pydantic import BaseModel, ConfigDict, StringConstraints
from sqlmodel import Column, Field, SQLModel

from distretto_shared.tables import service_registry
from newsletter import domain


def new_id() -> str:
    """A fresh UUID string."""
    return uuid4().hex


def utcnow() -> datetime:
    """Now, in UTC."""
    return datetime.now(UTC)


def timestamp_column(nullable: bool = True) -> Any:
    """A timestamp column with its zone (``None`` until set)."""
    return Field(default=None, sa_column=Column(sa.DateTime(timezone=True), nullable=nullable))


class Base(SQLModel, registry=service_registry()):
    """Base of the newsletter service's table models: its tables (and the backbone's) on its own metadata."""


class Strict(BaseModel):
    """Request bodies refuse unknown fields, so a typo is a 422, not silently ignored."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)


ID_CHARACTERS = r"^[A-Za-z0-9_-]+$"
"""What an id given in either form is made of (anything else is refused before a lookup: PostgreSQL
refuses a NUL in text, which would otherwise be a 500)."""


Ref = Annotated[str, StringConstraints(min_length=1, max_length=200, pattern=r"^[^\x00-\x1f\x7f]+$")]
"""A list or a segment named by its id (either form), its slug or its name: no control characters."""


def valid_email(value: str) -> str:
    """A validator: the address normalised, or a clear error."""
    try:
        return domain.normalise_email(value)
    except ValueError as exc:
        raise ValueError(f"{value!r} is not a valid email address") from exc


def clean_interests(values: list[str]) -> list[str]:
    """A validator: interests lower-cased, 1-80 characters each, without repeats."""
    out = []
    for v in values:
        v = v.strip().lower()
        if not v or len(v) > 80:
            raise ValueError("interests are 1–80 characters each")
        if v not in out:
            out.append(v)
    return out
