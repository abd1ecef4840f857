"""Use cases of the gateway: users, tokens, API keys (the identity of a request is :mod:`gateway.identify`)."""

from __future__ import annotations

import json
import secrets
from datetime import UTC, datetime, timedelta

from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlmodel import col

from distretto_shared.conventions import paginate
from distretto_shared.db import Database
from distretto_shared.logging import get_logger
from distretto_shared.web import Conflict, Invalid, NotFound, Page, PageParams
from gateway.domain import Role
from gateway.identify import (
    API_KEY_PREFIX,
    Authenticator,
    Passwords,
    Sessions,
    Unauthorized,
    as_utc,
    hash_api_key,
)
from gateway.models import (
    ApiKey,
    ApiKeyCreate,
    ApiKeyIssued,
    ApiKeyPublic,
    Identity,
    TokenResponse,
    User,
    UserCreate,
    UserPublic,
    UserUpdate,
)

log = get_logger(__name__)

# --- use cases


def _public(user: User) -> UserPublic:
    return UserPublic.model_validate(user, from_attributes=True)


def _key_public(key: ApiKey) -> ApiKeyPublic:
    return ApiKeyPublic(
        id=key.id,
        name=key.name,
        prefix=key.prefix,
        role=Role(key.role),
        organisation_id=key.organisation_id,
        created_by=key.created_by,
        created_at=key.created_at,
        revoked_at=key.revoked_at,
        expires_at=as_utc(key.expires_at),
        scopes=key.scope_list,
    )


async def ensure_admin(db: Database, passwords: Passwords, email: str, password: str) -> bool:
    """Create the bootstrap admin when no user has that email; True when created."""
    if not password:
        return False
    email = email.strip().lower()
    async with db.read() as session:
        if (await session.execute(select(col(User.id)).where(col(User.email) == email))).first():
            return False
    try:
        async with db.transaction() as session:
            session.add(User(email=email, role=Role.ADMIN.value, password_hash=await passwords.hash(password)))
    except IntegrityError:  # another worker created it first
        return False
    log.info("bootstrap admin created", email=email)
    return True


async def login(db: Database, passwords: Passwords, auth: Authenticator, email: str, password: str) -> TokenResponse:
    """A token for valid credentials of an active user."""
    async with db.read() as session:
        user = (
            await session.execute(select(User).where(col(User.email) == email.strip().lower()))
        ).scalar_one_or_none()
    ok = await passwords.verify(user.password_hash if user else None, password)
    if user is None or not ok or not user.active:
        raise Unauthorized("Wrong email or password, or the account is disabled")
    return auth.issue(user)


async def refresh_token(db: Database, auth: Authenticator, identity: Identity) -> TokenResponse:
    """A fresh token for a user whose token is still valid and whose session is still current."""
    if identity.via != "token":
        raise Invalid("Only a user's token can be refreshed (an API key has no session)")
    async with db.read() as session:
        user = await session.get(User, identity.principal.removeprefix("user:"))
    if user is None or not user.active or user.session_version != identity.session_version:
        raise Unauthorized("The session has ended (the account was changed or disabled): log in again")
    return auth.issue(user)


async def create_user(db: Database, passwords: Passwords, data: UserCreate) -> UserPublic:
    """A new user account; 409 when the email is taken."""
    password_hash = await passwords.hash(data.password)
    try:
        async with db.transaction() as session:
            if (await session.execute(select(col(User.id)).where(col(User.email) == data.email))).first():
                raise Conflict(f"A user with email {data.email} already exists")
            user = User(
                email=data.email,
                role=data.role.value,
                organisation_id=data.organisation_id,
                password_hash=password_hash,
            )
            session.add(user)
    except IntegrityError:
        raise Conflict(f"A user with email {data.email} already exists") from None
    return _public(user)


async def list_users(db: Database, params: PageParams, role: Role | None = None) -> Page[UserPublic]:
    """Users, oldest first."""
    query = select(User)
    if role is not None:
        query = query.where(col(User.role) == role.value)
    async with db.read() as session:
        order = [col(User.created_at), col(User.id)]
        return await paginate(session, query, params, order_by=order, map=_public)  # type: ignore[no-any-return]


async def get_user(db: Database, user_id: str) -> UserPublic:
    """One user; 404 when unknown."""
    async with db.read() as session:
        user = await session.get(User, user_id)
    if user is None:
        raise NotFound(f"No user {user_id}")
    return _public(user)


async def update_user(
    db: Database, passwords: Passwords, user_id: str, data: UserUpdate, sessions: Sessions | None = None
) -> UserPublic:
    """Change role, active flag, password or organisation; any of these ends the user's sessions."""
    password_hash = await passwords.hash(data.password) if data.password else None
    async with db.transaction() as session:
        user = await session.get(User, user_id)
        if user is None:
            raise NotFound(f"No user {user_id}")
        before = (user.role, user.active, user.organisation_id, user.password_hash)
        if data.role is not None:
            user.role = data.role.value
        if data.active is not None:
            user.active = data.active
        if "organisation_id" in data.model_fields_set:
            user.organisation_id = data.organisation_id
        if password_hash:
            user.password_hash = password_hash
        if (user.role, user.active, user.organisation_id, user.password_hash) != before:
            user.session_version += 1  # every token issued before stops working
        user.updated_at = datetime.now(UTC)
        session.add(user)
    if sessions is not None:
        sessions.note(user)
    return _public(user)


async def change_password(
    db: Database, passwords: Passwords, user_id: str, current: str, new: str, sessions: Sessions | None = None
) -> None:
    """A user changes their own password (the current one is required); their other tokens end."""
    async with db.read() as session:
        user = await session.get(User, user_id)
    if user is None or not await passwords.verify(user.password_hash, current):
        raise Unauthorized("The current password is wrong")
    new_hash = await passwords.hash(new)
    async with db.transaction() as session:
        fresh = await session.get(User, user_id)
        if fresh is None:
            raise NotFound(f"No user {user_id}")
        fresh.password_hash = new_hash
        fresh.session_version += 1
        fresh.updated_at = datetime.now(UTC)
        session.add(fresh)
    if sessions is not None:
        sessions.note(fresh)


async def create_api_key(db: Database, data: ApiKeyCreate, created_by: str | None, max_days: int = 365) -> ApiKeyIssued:
    """A new random key with an expiry and scopes; the answer is the only place it is ever shown."""
    now = datetime.now(UTC)
    expires_at = data.expiry(now)
    if expires_at <= now:
        raise Invalid("The key's expiry must be in the future")
    if expires_at > now + timedelta(days=max_days, minutes=1):
        raise Invalid(f"An API key lives at most {max_days} days")
    key = API_KEY_PREFIX + secrets.token_urlsafe(32)
    row = ApiKey(
        name=data.name,
        prefix=key[:10],
        key_hash=hash_api_key(key),
        role=data.role.value,
        organisation_id=data.organisation_id,
        created_by=created_by,
        expires_at=expires_at,
        scopes=json.dumps(data.scopes),
    )
    async with db.transaction() as session:
        session.add(row)
    return ApiKeyIssued(**_key_public(row).model_dump(), key=key)


async def list_api_keys(db: Database, params: PageParams, include_revoked: bool = False) -> Page[ApiKeyPublic]:
    """API keys, oldest first (revoked ones only when asked)."""
    query = select(ApiKey)
    if not include_revoked:
        query = query.where(col(ApiKey.revoked_at).is_(None))
    async with db.read() as session:
        order = [col(ApiKey.created_at), col(ApiKey.id)]
        return await paginate(session, query, params, order_by=order, map=_key_public)  # type: ignore[no-any-return]


async def revoke_api_key(db: Database, key_id: str) -> ApiKeyPublic:
    """Revoke a key (revoking twice changes nothing)."""
    async with db.transaction() as session:
        key = await session.get(ApiKey, key_id)
        if key is None:
            raise NotFound(f"No API key {key_id}")
        if key.revoked_at is None:
            key.revoked_at = datetime.now(UTC)
            session.add(key)
    return _key_public(key)
