"""Use cases of the gateway: users, tokens, API keys; and the identity of a request."""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import json
import secrets
import time
from collections import OrderedDict
from datetime import UTC, datetime, timedelta

import jwt
from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from sqlalchemy import select
from sqlalchemy.exc import IntegrityError
from sqlmodel import col

from distretto_shared.conventions import paginate
from distretto_shared.db import Database
from distretto_shared.identity import ALGORITHM, TokenSigner, TrustedKey, parse_trusted_keys
from distretto_shared.logging import get_logger
from distretto_shared.web import Conflict, DomainError, Invalid, NotFound, Page, PageParams
from gateway.config import Settings
from gateway.domain import Role
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

API_KEY_PREFIX = "dk_"


class Unauthorized(DomainError):
    """Credentials missing, wrong, expired or revoked."""

    status = 401
    code = "unauthorized"


class Passwords:
    """argon2id hashing, run off the event loop (a hash takes tens of milliseconds by design)."""

    def __init__(self, settings: Settings) -> None:
        self.hasher = PasswordHasher(
            time_cost=settings.argon2_time_cost,
            memory_cost=settings.argon2_memory_kib,
            parallelism=settings.argon2_parallelism,
            type=Type.ID,
        )
        # Verifying against this when the email is unknown keeps both answers equally slow.
        self._dummy = self.hasher.hash(secrets.token_hex(16))

    async def hash(self, password: str) -> str:
        """The argon2id hash of ``password``."""
        return await asyncio.to_thread(self.hasher.hash, password)

    async def verify(self, password_hash: str | None, password: str) -> bool:
        """True when ``password`` matches (``None`` hash: always False, same cost)."""

        def check() -> bool:
            try:
                return self.hasher.verify(password_hash or self._dummy, password) and password_hash is not None
            except (VerifyMismatchError, VerificationError, InvalidHashError):
                return False

        return await asyncio.to_thread(check)


def hash_api_key(key: str) -> str:
    """SHA-256 of a key: keys are 256-bit random, so a fast hash is enough (no dictionary to guess from)."""
    return hashlib.sha256(key.encode()).hexdigest()


class Sessions:
    """Every user's current session version and active flag, as this worker last read them.

    Re-read from the database every ``session_refresh_seconds`` by a background task (one
    query over the user table), and updated at once on this worker when it changes a user;
    a token whose session version is not the user's current one, or whose user is disabled,
    is refused. So disabling, demoting or re-passwording a user ends their tokens on every
    worker within ``session_refresh_seconds``.
    """

    def __init__(self, db: Database, refresh_seconds: float) -> None:
        self.db = db
        self.refresh_seconds = refresh_seconds
        self.current: dict[str, tuple[int, bool]] = {}
        """user id → (session version, active)."""
        self.loaded = False
        self._task: asyncio.Task[None] | None = None

    async def refresh(self) -> None:
        """Read every user's session version and active flag."""
        async with self.db.read() as session:
            rows = (await session.execute(select(col(User.id), col(User.session_version), col(User.active)))).all()
        self.current = {uid: (int(version), bool(active)) for uid, version, active in rows}
        self.loaded = True

    async def load_one(self, user_id: str) -> tuple[int, bool] | None:
        """One user's state straight from the database (a user this worker has not seen yet)."""
        async with self.db.read() as session:
            row = (
                await session.execute(
                    select(col(User.session_version), col(User.active)).where(col(User.id) == user_id)
                )
            ).first()
        if row is None:
            return None
        state = (int(row[0]), bool(row[1]))
        self.current[user_id] = state
        return state

    def note(self, user: User) -> None:
        """This worker changed or read ``user``: know its state now, not at the next refresh."""
        self.current[user.id] = (user.session_version, user.active)

    async def _loop(self) -> None:
        while True:
            await asyncio.sleep(self.refresh_seconds)
            try:
                await self.refresh()
            except Exception as exc:  # the database is down: keep the last known state, say so
                log.warning("session versions not refreshed", error=repr(exc))

    async def start(self) -> None:
        """Read the table once and keep it fresh."""
        await self.refresh()
        self._task = asyncio.create_task(self._loop(), name="gateway-sessions")

    async def stop(self) -> None:
        """Stop refreshing."""
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None


def gateway_keys(settings: Settings, signer: TokenSigner) -> dict[str, TrustedKey]:
    """The keys user tokens are accepted from: the gateway's entries of ``DISTRETTO_TRUSTED_KEYS``
    (older keys until their ``not_after``) and always the gateway's current signing key."""
    keys = {
        kid: key
        for kid, key in (parse_trusted_keys(settings.trusted_keys) if settings.trusted_keys.strip() else {}).items()
        if key.issuer == "gateway"
    }
    keys.setdefault(signer.kid, TrustedKey(signer.kid, "gateway", signer.private_key.public_key()))
    return keys


class Authenticator:
    """Turns ``Authorization: Bearer`` / ``X-API-Key`` into a verified :class:`Identity`.

    User tokens are EdDSA (Ed25519) JWTs signed with the gateway's key, audience
    ``token_audience``; any other algorithm (``none``, HS256 with whatever secret, RS256 …)
    is refused before a signature is looked at.
    """

    def __init__(self, settings: Settings, db: Database, signer: TokenSigner) -> None:
        self.settings = settings
        self.db = db
        self.signer = signer
        self.keys = gateway_keys(settings, signer)
        self.ttl = settings.token_ttl_seconds
        self.sessions = Sessions(db, settings.session_refresh_seconds)
        self._tokens: OrderedDict[str, tuple[Identity, float]] = OrderedDict()
        """Verified tokens (LRU, at most ``token_cache_size``) → identity and expiry (epoch seconds)."""
        self.token_cache_size = max(0, settings.token_cache_size)
        self._keys: dict[str, tuple[Identity | None, float]] = {}

    # --- JWT
    def issue(self, user: User) -> TokenResponse:
        """A signed EdDSA token for ``user``, carrying its current session version."""
        now = int(time.time())
        claims = {
            "sub": user.id,
            "role": user.role,
            "email": user.email,
            "org": user.organisation_id,
            "sv": user.session_version,
            "iat": now,
            "exp": now + self.ttl,
            "iss": "gateway",
            "aud": self.settings.token_audience,
            "jti": secrets.token_hex(8),
        }
        token = jwt.encode(claims, self.signer.private_key, algorithm=ALGORITHM, headers={"kid": self.signer.kid})
        self.sessions.note(user)
        return TokenResponse(access_token=token, expires_in=self.ttl, role=Role(user.role))

    def verify_token(self, token: str) -> Identity:
        """The identity a token carries; :class:`Unauthorized` when bad or expired.

        A token verified once is remembered (keyed by the whole token, so a changed byte is a
        miss) until its ``exp``: a hit costs a dictionary look-up instead of a signature check.
        The session check (:meth:`session_state`) is separate and runs on every request.
        """
        hit = self._tokens.get(token)
        if hit is not None:
            if hit[1] > time.time():
                self._tokens.move_to_end(token)
                return hit[0]
            del self._tokens[token]  # expired: verify again, which says so
        try:
            header = jwt.get_unverified_header(token)
        except jwt.InvalidTokenError:
            raise Unauthorized("The token is not valid") from None
        if header.get("alg") != ALGORITHM:
            raise Unauthorized(f"The token is not valid: only {ALGORITHM} tokens signed by the gateway are accepted")
        trusted = self.keys.get(str(header.get("kid", "")))
        if trusted is None:
            raise Unauthorized("The token is not valid: it names no key of this gateway")
        if not trusted.usable(time.time()):
            raise Unauthorized("The token was signed with a retired key: ask POST /auth/token for a new one")
        try:
            claims = jwt.decode(
                token,
                trusted.key,
                algorithms=[ALGORITHM],
                audience=self.settings.token_audience,
                issuer="gateway",
                options={"require": ["exp", "sub", "role", "iat", "sv", "aud", "iss"]},
            )
            role = Role(claims["role"])
            version = int(claims["sv"])
        except jwt.ExpiredSignatureError:
            raise Unauthorized("The token has expired: ask POST /auth/token for a new one") from None
        except (jwt.InvalidTokenError, ValueError, KeyError, TypeError):
            raise Unauthorized("The token is not valid") from None
        identity = Identity(
            principal=f"user:{claims['sub']}",
            role=role,
            email=claims.get("email"),
            organisation_id=claims.get("org"),
            via="token",
            session_version=version,
            expires_at=float(claims["exp"]),
        )
        if self.token_cache_size:
            self._tokens[token] = (identity, float(claims["exp"]))
            if len(self._tokens) > self.token_cache_size:
                self._tokens.popitem(last=False)
        return identity

    def session_state(self, identity: Identity) -> bool | None:
        """For a user token: True while its session is current, False when ended, ``None`` when this
        worker does not know the user yet or knows an older session than the token's (ask
        :meth:`check_session`). API keys: always True."""
        if identity.session_version is None:
            return True
        state = self.sessions.current.get(identity.principal[5:])
        if state is None or identity.session_version > state[0]:
            # Unknown here, or a token newer than what this worker last read (another worker
            # changed the user and minted it since): only the database can say.
            return None
        return state[1] and state[0] == identity.session_version

    async def check_session(self, identity: Identity) -> None:
        """:class:`Unauthorized` when the user token's session has ended (disabled, demoted, new password)."""
        ok = self.session_state(identity)
        if ok is None:
            state = await self.sessions.load_one(identity.principal[5:])
            ok = state is not None and state[1] and state[0] == identity.session_version
        if not ok:
            raise Unauthorized("The session has ended (the account was changed or disabled): log in again")

    # --- API keys
    async def verify_api_key(self, key: str) -> Identity:
        """The identity of an API key; :class:`Unauthorized` when unknown, revoked or expired."""
        digest = hash_api_key(key)
        now = time.monotonic()
        hit = self._keys.get(digest)
        if hit is not None and hit[1] > now:
            identity = hit[0]
        else:
            identity = await lookup_api_key(self.db, digest)
            if len(self._keys) > 50_000:
                self._keys.clear()
            self._keys[digest] = (identity, now + self.settings.api_key_cache_seconds)
        if identity is None:
            raise Unauthorized("The API key is not valid or has been revoked")
        if identity.expires_at is not None and identity.expires_at <= time.time():
            raise Unauthorized("The API key has expired: ask an administrator for a new one")
        return identity

    def forget_api_key(self, key_id: str) -> None:
        """Drop a revoked key from this worker's cache at once."""
        principal = f"apikey:{key_id}"
        for digest, (identity, _) in list(self._keys.items()):
            if identity is not None and identity.principal == principal:
                del self._keys[digest]

    def identify_bearer(self, authorization: str) -> Identity | str:
        """The identity of an ``Authorization: Bearer <token>`` header; :class:`Unauthorized` otherwise.

        An API key sent as the bearer (``dk_…``; what a Prometheus scrape's ``authorization``
        sends) is returned as is, for :meth:`verify_api_key` — it needs the database.
        """
        scheme, _, token = authorization.partition(" ")
        token = token.strip()
        if scheme.lower() != "bearer" or not token:
            raise Unauthorized("The Authorization header must be 'Bearer <token>'")
        if token.startswith(API_KEY_PREFIX):
            return token
        return self.verify_token(token)

    async def identify(self, authorization: str | None, api_key: str | None) -> Identity | None:
        """The caller's identity, ``None`` when no credentials were sent."""
        if authorization:
            found = self.identify_bearer(authorization)
            if isinstance(found, str):
                return await self.verify_api_key(found)
            await self.check_session(found)
            return found
        if api_key is not None:
            return await self.verify_api_key(api_key.strip())
        return None


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
        expires_at=_aware(key.expires_at),
        scopes=key.scope_list,
    )


def _aware(value: datetime) -> datetime:
    """SQLite gives naive datetimes back: they were written in UTC."""
    return value if value.tzinfo else value.replace(tzinfo=UTC)


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


async def lookup_api_key(db: Database, digest: str) -> Identity | None:
    """The identity of a live key with this hash, ``None`` when unknown or revoked."""
    async with db.read() as session:
        key = (await session.execute(select(ApiKey).where(col(ApiKey.key_hash) == digest))).scalar_one_or_none()
    if key is None or key.revoked_at is not None:
        return None
    return Identity(
        principal=f"apikey:{key.id}",
        role=Role(key.role),
        organisation_id=key.organisation_id,
        via="api_key",
        scopes=tuple(key.scope_list),
        expires_at=_aware(key.expires_at).timestamp(),
    )
