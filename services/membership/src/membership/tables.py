"""The one ``Base`` of the membership service's tables, and what every aggregate's models share.

Every aggregate's table models derive from :class:`Base`, so the service keeps one MetaData
(its tables and the backbone's); :mod:`membership.models` imports them all.
"""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any

from pydantic import ConfigDict, StringConstraints
from sqlalchemy import DateTime
from sqlmodel import SQLModel

from distretto_shared.conventions import new_id
from distretto_shared.tables import service_registry

__all__ = ["STRICT_INPUT", "UTC_DT", "Base", "Tag", "as_utc", "fields", "new_id", "utcnow"]


def utcnow() -> datetime:
    """Now, in UTC."""
    return datetime.now(UTC)


def as_utc(value: datetime | None) -> datetime | None:
    """SQLite hands back naive datetimes: they are UTC."""
    if value is None or value.tzinfo is not None:
        return value
    return value.replace(tzinfo=UTC)


def fields(row: Any, names: Any = None) -> dict[str, Any]:
    """A table row's fields as a dict (``model_dump`` would warn: enum columns come back as str)."""
    return {name: getattr(row, name) for name in (names or type(row).model_fields)}


STRICT_INPUT = ConfigDict(extra="forbid", str_strip_whitespace=True)
"""Input models refuse unknown fields (a typo must not be silently dropped)."""

Tag = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]
UTC_DT = DateTime(timezone=True)


class Base(SQLModel, registry=service_registry()):
    """Base of the membership service's table models: its tables (and the backbone's) on its own metadata."""
