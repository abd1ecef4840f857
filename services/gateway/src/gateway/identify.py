"""Who is calling: passwords, user tokens (issued and verified), API keys and the sessions behind them.

The request path (:mod:`gateway.proxy`) asks :class:`Authenticator` for the identity of every
request; the use cases of :mod:`gateway.service` (users, API keys, login) use its hashing and
issue its tokens. Split from the use cases: this half runs on every request, that one on a few.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import secrets
import time
from collections import OrderedDict
from datetime import UTC, datetime

import jwt
from argon2 import PasswordHasher, Type
from argon2.exceptions import InvalidHashError, VerificationError, VerifyMismatchError
from sqlalchemy import select
from sqlmodel import col

from distretto_shared.db import Database
from distretto_shared.identity import ALGORITHM, TokenSigner, TrustedKey, parse_trusted_keys
from distretto_shared.logging import get_logger
from distretto_shared.web import DomainError
from gateway.config import Settings
from gateway.domain import Role
from gateway.models import (
    ApiKey,
    Identity,
    TokenResponse,
    User,
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


def as_utc(value: datetime) -> datetime:
    """SQLite gives naive datetimes back: they were written in UTC."""
    return value if value.tzinfo else value.replace(tzinfo=UTC)


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
        expires_at=as_utc(key.expires_at).timestamp(),
    )
