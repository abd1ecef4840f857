"""Users and API keys: tables and their API shapes."""

from __future__ import annotations

import json
import re
from datetime import UTC, datetime, timedelta
from functools import cached_property
from typing import Annotated
from uuid import uuid4

from pydantic import BaseModel, PlainSerializer, WithJsonSchema, field_validator, model_validator
from pydantic import Field as Attr
from sqlalchemy import Column, DateTime, Text
from sqlmodel import Field, SQLModel

from distretto_shared.conventions import Id, StrictInt, UtcDateTime, format_utc
from distretto_shared.identity import Principal
from distretto_shared.tables import service_registry
from gateway.domain import Role


def _now() -> datetime:
    return datetime.now(UTC)


def _id() -> str:
    return uuid4().hex


_EMAIL = re.compile(r"^[^@\s]+@[^@\s]+\.[^@\s]+$")


def _email(value: str) -> str:
    value = value.strip().lower()
    if not _EMAIL.match(value):
        raise ValueError("not an email address")
    return value


class Base(SQLModel, registry=service_registry()):
    """Base of the gateway service's table models: its tables (and the backbone's) on its own metadata."""


class UserBase(Base):
    """What a user account says about its holder."""

    email: str = Field(max_length=254, unique=True, index=True)
    role: str = Field(max_length=20)
    """One of :class:`gateway.domain.Role` (kept as text: no database enum type to migrate)."""
    organisation_id: str | None = Field(default=None, max_length=64)
    """The member organisation a ``member`` user belongs to (forwarded as X-Distretto-Organisation)."""


class User(UserBase, table=True):
    """A person who logs in at POST /auth/token."""

    __tablename__ = "gateway_user"

    id: str = Field(default_factory=_id, primary_key=True, max_length=32)
    password_hash: str = Field(max_length=255)
    active: bool = True
    session_version: int = 1
    """Carried in every token issued to the user; raised when the role, organisation, active flag
    or password changes, which ends every token issued before (see ``identify.Sessions``)."""
    created_at: UtcDateTime = Field(default_factory=_now, sa_column=Column(DateTime(timezone=True), nullable=False))
    updated_at: UtcDateTime = Field(default_factory=_now, sa_column=Column(DateTime(timezone=True), nullable=False))


class UserCreate(BaseModel):
    """A new user account."""

    email: str = Attr(max_length=254)
    password: str = Attr(min_length=12, max_length=256, description="At least 12 characters")
    role: Role
    organisation_id: Id | None = Attr(default=None, max_length=64)

    @field_validator("email")
    @classmethod
    def _lower(cls, value: str) -> str:
        return _email(value)


class UserUpdate(BaseModel):
    """Changes to a user account (only the fields given)."""

    role: Role | None = None
    active: bool | None = None
    password: str | None = Attr(default=None, min_length=12, max_length=256)
    organisation_id: Id | None = Attr(default=None, max_length=64)


class UserPublic(BaseModel):
    """A user account as the API shows it (never the password hash)."""

    id: Id
    email: str
    role: Role
    organisation_id: Id | None
    active: bool
    created_at: UtcDateTime
    updated_at: UtcDateTime


class ApiKey(Base, table=True):
    """A partner system's key: only its SHA-256 is stored; revocable."""

    __tablename__ = "api_key"

    id: str = Field(default_factory=_id, primary_key=True, max_length=32)
    name: str = Field(max_length=200)
    prefix: str = Field(max_length=16)
    """The key's first characters, to recognise it in lists without storing it."""
    key_hash: str = Field(max_length=64, unique=True, index=True)
    role: str = Field(max_length=20)
    organisation_id: str | None = Field(default=None, max_length=64)
    created_by: str | None = Field(default=None, max_length=254)
    created_at: UtcDateTime = Field(default_factory=_now, sa_column=Column(DateTime(timezone=True), nullable=False))
    revoked_at: UtcDateTime | None = Field(default=None, sa_column=Column(DateTime(timezone=True), nullable=True))
    expires_at: UtcDateTime = Field(sa_column=Column(DateTime(timezone=True), nullable=False))
    """After this the key is refused (every key has one, at most ``api_key_max_days`` ahead)."""
    scopes: str = Field(default="[]", sa_column=Column(Text, nullable=False, server_default="[]"))
    """JSON list of scopes (see :class:`ApiKeyCreate`): what the key may call."""

    @property
    def scope_list(self) -> list[str]:
        """The scopes as a list."""
        return [str(s) for s in json.loads(self.scopes or "[]")]


_SCOPE = re.compile(r"^(?:(?:[A-Z]+(?:,[A-Z]+)*) )?/[^\s]*$|^topic:[A-Za-z0-9._*-]+$")


def _scope(value: str) -> str:
    value = value.strip()
    if not _SCOPE.match(value):
        raise ValueError(
            f"{value!r} is not a scope: use a route pattern ('/api/projects/*', 'GET /api/membership/figures') "
            "or an event topic ('topic:public.membership.*')"
        )
    return value


class ApiKeyCreate(BaseModel):
    """A new API key for a partner system: who it is for, what it may call, until when."""

    name: str = Attr(min_length=1, max_length=200, description="Who the key is for")
    role: Role = Role.PARTNER
    organisation_id: Id | None = Attr(default=None, max_length=64)
    scopes: list[str] = Attr(
        min_length=1,
        max_length=50,
        description="What the key may call: route patterns, optionally after methods ('GET /api/projects/*'; "
        "'*' matches any characters), and event topics ('topic:public.membership.*'). Required.",
    )
    expires_in_days: StrictInt | None = Attr(
        default=None, ge=1, description="Days until the key stops working (at most the gateway's limit)"
    )
    expires_at: UtcDateTime | None = Attr(
        default=None, description="When the key stops working (instead of expires_in_days; UTC when no zone)"
    )

    @model_validator(mode="after")
    def _one_expiry(self) -> ApiKeyCreate:
        if (self.expires_in_days is None) == (self.expires_at is None):
            raise ValueError("give the key an expiry: expires_in_days or expires_at (one of them)")
        if self.expires_at is not None and self.expires_at.tzinfo is None:
            self.expires_at = self.expires_at.replace(tzinfo=UTC)
        return self

    def expiry(self, now: datetime) -> datetime:
        """When the key stops working."""
        if self.expires_at is not None:
            return self.expires_at
        return now + timedelta(days=self.expires_in_days or 0)

    @field_validator("role")
    @classmethod
    def _not_admin(cls, value: Role) -> Role:
        if value == Role.ADMIN:
            raise ValueError("an API key cannot have the admin role: administrators log in as users")
        return value

    @field_validator("scopes")
    @classmethod
    def _scopes(cls, value: list[str]) -> list[str]:
        return [_scope(v) for v in value]


class ApiKeyPublic(BaseModel):
    """An API key as lists show it (never the key)."""

    id: Id
    name: str
    prefix: str
    role: Role
    organisation_id: Id | None
    created_by: str | None
    created_at: UtcDateTime
    revoked_at: UtcDateTime | None
    expires_at: UtcDateTime
    scopes: list[str]


class ApiKeyIssued(ApiKeyPublic):
    """The answer to creating a key: the only time the key itself is shown."""

    key: str


class TokenRequest(BaseModel):
    """Credentials for POST /auth/token."""

    email: str = Attr(min_length=3, max_length=254)
    password: str = Attr(min_length=1, max_length=256)


class TokenResponse(BaseModel):
    """A bearer token."""

    access_token: str
    token_type: str = "bearer"
    expires_in: int
    role: Role


class PasswordChange(BaseModel):
    """A user changing their own password."""

    current_password: str = Attr(min_length=1, max_length=256)
    new_password: str = Attr(min_length=12, max_length=256, description="At least 12 characters")


def _epoch_iso(value: float | None) -> str | None:
    return None if value is None else format_utc(datetime.fromtimestamp(value, UTC))


EpochAsDateTime = Annotated[
    float | None,
    PlainSerializer(_epoch_iso, return_type=str | None, when_used="json"),
    WithJsonSchema({"anyOf": [{"type": "string", "format": "date-time"}, {"type": "null"}]}, mode="serialization"),
]


class Identity(BaseModel):
    """Who is calling, as verified by the gateway."""

    principal: str
    """``user:<id>`` or ``apikey:<id>``."""
    role: Role
    email: str | None = None
    organisation_id: Id | None = None
    via: str
    """``token`` or ``api_key``."""
    scopes: tuple[str, ...] = ()
    """An API key's scopes (route patterns and ``topic:`` entries); empty for users."""
    session_version: int | None = None
    """A user token's session version (checked against the user's current one on every request)."""
    expires_at: EpochAsDateTime = None
    """Epoch seconds after which this identity is no longer valid (a token's ``exp``, a key's expiry);
    answered as an ISO 8601 timestamp with ``Z``, as every timestamp of the API."""

    @cached_property
    def as_principal(self) -> Principal:
        """The identity as the services receive it (inside the credential the gateway mints)."""
        return Principal(
            id=self.principal, role=self.role.value, organisation_id=self.organisation_id, scopes=self.scopes
        )

    @cached_property
    def route_scopes(self) -> tuple[tuple[frozenset[str] | None, re.Pattern[str]], ...]:
        """The scopes that name routes, compiled: (methods or ``None`` for any, path regex)."""
        out = []
        for scope in self.scopes:
            if scope.startswith("topic:"):
                continue
            methods, _, pattern = scope.rpartition(" ")
            regex = re.compile("^" + ".*".join(re.escape(p) for p in pattern.split("*")) + "$")
            out.append((frozenset(methods.split(",")) if methods else None, regex))
        return tuple(out)

    def in_scope(self, method: str, path: str) -> bool:
        """True when the identity may call ``method path`` (users: always; API keys: by their scopes)."""
        if self.via != "api_key":
            return True
        method = "GET" if method == "HEAD" else method
        return any((m is None or method in m) and r.match(path) for m, r in self.route_scopes)
