"""The one ``Base`` of the projects service's tables (its own MetaData) and the field helpers every
aggregate's models use. ``projects.models`` imports every aggregate's tables onto it."""

from __future__ import annotations

from datetime import UTC, datetime
from typing import Annotated, Any
from uuid import uuid4

from pydantic import BeforeValidator, WithJsonSchema
from sqlalchemy import JSON, Column, DateTime, ForeignKey, String
from sqlmodel import Field, SQLModel

from distretto_shared.conventions import hex_id
from distretto_shared.tables import service_registry

StoredId = Annotated[str, BeforeValidator(hex_id), WithJsonSchema({"type": "string", "format": "uuid"})]
"""An id given to the service (a path or body field): either form accepted (the dashed canonical one
or the 32-hex one), kept in the 32-hex form the tables store (docs/api-conventions.md, "Ids")."""


def new_id() -> str:
    """A fresh entity id."""
    return uuid4().hex


def utcnow() -> datetime:
    """The current UTC time."""
    return datetime.now(UTC)


def timestamp_field() -> Any:
    return Field(default_factory=utcnow, sa_column=Column(DateTime(timezone=True), nullable=False))


def json_list_field() -> Any:
    return Field(default_factory=list, sa_column=Column(JSON, nullable=False))


def project_fk() -> Any:
    return Field(sa_column=Column(String(32), ForeignKey("project.id", ondelete="CASCADE"), nullable=False, index=True))


def clean_list(values: list[str]) -> list[str]:
    out: list[str] = []
    for v in values:
        v = v.strip()
        if v and v not in out:
            out.append(v)
    return out


class Base(SQLModel, registry=service_registry()):
    """Base of the projects service's table models: its tables (and the backbone's) on its own metadata."""


def as_utc(v: datetime) -> datetime:
    # SQLite hands timestamps back without their zone; they were written in UTC.
    return v.replace(tzinfo=UTC) if v.tzinfo is None else v
