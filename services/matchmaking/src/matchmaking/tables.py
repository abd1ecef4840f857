"""What every table and API shape of the service builds on: the one ``Base`` (one metadata for the
service), ids, timestamps, JSON columns, strict request bodies."""

from __future__ import annotations

import re
import uuid
from datetime import UTC, datetime
from typing import Annotated, Any

import sqlalchemy as sa
from pydantic import AfterValidator, BaseModel, ConfigDict
from sqlmodel import Field as SQLField
from sqlmodel import SQLModel

from distretto_shared.tables import service_registry


def new_id() -> str:
    """A fresh id."""
    return uuid.uuid4().hex


def utcnow() -> datetime:
    """Now, in UTC."""
    return datetime.now(UTC)


def _aware(value: datetime) -> datetime:
    # SQLite hands back naive datetimes; everything stored is UTC.
    return value if value.tzinfo else value.replace(tzinfo=UTC)


UtcDatetime = Annotated[datetime, AfterValidator(_aware)]


def json_column(default: Any = list) -> Any:
    return SQLField(default_factory=default, sa_column=sa.Column(sa.JSON, nullable=False))


def timestamp_column() -> Any:
    return SQLField(default_factory=utcnow, sa_column=sa.Column(sa.DateTime(timezone=True), nullable=False))


# -- tables -----------------------------------------------------------------------------


class Base(SQLModel, registry=service_registry()):
    """Base of the matchmaking service's table models: its tables (and the backbone's) on its own metadata."""


SLUG = re.compile(r"^[a-z0-9][a-z0-9_\- ]*$")


def clean_list(values: list[str], what: str, *, max_items: int = 30, max_len: int = 120) -> list[str]:
    out: list[str] = []
    if len(values) > max_items:
        raise ValueError(f"at most {max_items} {what}")
    for v in values:
        v = v.strip()
        if not v:
            raise ValueError(f"{what} must not be empty strings")
        if len(v) > max_len:
            raise ValueError(f"each of the {what} has at most {max_len} characters")
        if v.lower() not in (o.lower() for o in out):
            out.append(v)
    return out


class Strict(BaseModel):
    """Unknown fields are refused (a typo must not be silently ignored)."""

    model_config = ConfigDict(extra="forbid", str_strip_whitespace=True)
