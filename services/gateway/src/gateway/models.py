"""Users and API keys: tables and their API shapes."""

from __future__ import annotations

import re
from datetime import UTC, datetime
from functools import cached_property
from uuid import uuid4

from pydantic import BaseModel, field_validator
from pydantic import Field as Attr
from sqlalchemy import Column, DateTime
from sqlmodel import Field, SQLModel

from distretto_shared.identity import Principal
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


class UserBase(SQLModel):
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
    created_at: datetime = Field(default_factory=_now, sa_column=Column(DateTime(timezone=True), nullable=False))
    updated_at: datetime = Field(default_factory=_now, sa_column=Column(DateTime(timezone=True), nullable=False))


class UserCreate(BaseModel):
    """A new user account."""

    email: str = Attr(max_length=254)
    password: str = Attr(min_length=12, max_length=256, description="At least 12 characters")
    role: Role
    organisation_id: str | None = Attr(default=None, max_length=64)

    @field_validator("email")
    @classmethod
    def _lower(cls, value: str) -> str:
        return _email(value)


class UserUpdate(BaseModel):
    """Changes to a user account (only the fields given)."""

    role: Role | None = None
    active: bool | None = None
    password: str | None = Attr(default=None, min_length=12, max_length=256)
    organisation_id: str | None = Attr(default=None, max_length=64)


class UserPublic(BaseModel):
    """A user account as the API shows it (never the password hash)."""

    id: str
    email: str
    role: Role
    organisation_id: str | None
    active: bool
    created_at: datetime
    updated_at: datetime


class ApiKey(SQLModel, table=True):
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
    created_at: datetime = Field(default_factory=_now, sa_column=Column(DateTime(timezone=True), nullable=False))
    revoked_at: datetime | None = Field(default=None, sa_column=Column(DateTime(timezone=True), nullable=True))


class ApiKeyCreate(BaseModel):
    """A new API key for a partner system."""

    name: str = Attr(min_length=1, max_length=200, description="Who the key is for")
    role: Role = Role.PARTNER
    organisation_id: str | None = Attr(default=None, max_length=64)


class ApiKeyPublic(BaseModel):
    """An API key as lists show it (never the key)."""

    id: str
    name: str
    prefix: str
    role: Role
    organisation_id: str | None
    created_by: str | None
    created_at: datetime
    revoked_at: datetime | None


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


class Identity(BaseModel):
    """Who is calling, as verified by the gateway."""

    principal: str
    """``user:<id>`` or ``apikey:<id>``."""
    role: Role
    email: str | None = None
    organisation_id: str | None = None
    via: str
    """``token`` or ``api_key``."""

    @cached_property
    def as_principal(self) -> Principal:
        """The identity as the services receive it (inside the credential the gateway mints)."""
        return Principal(id=self.principal, role=self.role.value, organisation_id=self.organisation_id)
