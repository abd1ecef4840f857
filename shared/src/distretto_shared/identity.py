"""Who is calling: one identity, end to end.

The gateway authenticates people and partner systems (passwords, API keys) and
passes the identity on to the service as a short-lived credential the service
verifies itself: an EdDSA (Ed25519) JWT in ``X-Distretto-Identity`` whose
audience is that service. A service calling another service mints the same
kind of credential with its own key, as the principal ``service:<name>``.

Keys (no defaults; ``make up`` generates them, production sets them):

- ``DISTRETTO_SIGNING_KEY`` / ``DISTRETTO_SIGNING_KID``: this process's Ed25519
  private key (PEM) and the key id it puts in the tokens it mints.
- ``DISTRETTO_TRUSTED_KEYS``: JSON list of ``{"kid", "issuer", "public_key",
  "not_after"?}``. A key with issuer ``gateway`` may assert any principal; a key
  with issuer ``service:<name>`` may assert only that service. Rotation: add the
  new key, switch the signing key, keep the old one trusted until its
  ``not_after``.

Only ``EdDSA`` is accepted: ``alg: none``, HMAC with a public key as the secret
and RSA/ECDSA tokens are refused before any signature is checked.
"""

from __future__ import annotations

import json
import time
import uuid
from collections.abc import Mapping
from dataclasses import dataclass, field
from datetime import UTC, date, datetime
from enum import StrEnum
from typing import Any

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey

IDENTITY_HEADER = "x-distretto-identity"
ALGORITHM = "EdDSA"
DEFAULT_TTL = 60
"""Seconds a minted credential lives: long enough for one request, short enough to be useless when stolen."""
LEEWAY = 5
"""Seconds of clock skew tolerated between processes."""


class Role(StrEnum):
    """What a caller is to the foundation."""

    ADMIN = "admin"
    STAFF = "staff"
    MEMBER = "member"
    PARTNER = "partner"
    OPERATOR = "operator"
    """Watches dashboards: metrics, readiness, dead letters; no personal data."""
    SERVICE = "service"
    """Another Distretto service, acting as itself."""
    ANONYMOUS = "anonymous"
    """A caller of a public route, without credentials."""


STAFF_ROLES = frozenset({Role.ADMIN, Role.STAFF})


@dataclass(frozen=True)
class Principal:
    """A verified caller."""

    id: str
    """``user:<id>``, ``apikey:<id>``, ``service:<name>`` or ``anonymous``."""
    role: str
    organisation_id: str | None = None
    """The member organisation a member principal belongs to (and acts for)."""
    scopes: tuple[str, ...] = ()

    @property
    def is_staff(self) -> bool:
        """Admin or staff: sees and keeps everything."""
        return self.role in STAFF_ROLES

    @property
    def is_anonymous(self) -> bool:
        """No credentials: public routes only."""
        return self.role == Role.ANONYMOUS

    @property
    def is_service(self) -> bool:
        """Another service acting as itself."""
        return self.role == Role.SERVICE

    @property
    def service_name(self) -> str | None:
        """``newsletter`` for ``service:newsletter``; ``None`` for everyone else."""
        return self.id.removeprefix("service:") if self.is_service else None

    def acts_for(self, organisation_id: str | None) -> bool:
        """True when this principal may see and change ``organisation_id``'s private data."""
        if self.is_staff:
            return True
        return self.role == Role.MEMBER and organisation_id is not None and self.organisation_id == str(organisation_id)


ANONYMOUS = Principal(id="anonymous", role=Role.ANONYMOUS)


class InvalidCredential(Exception):
    """The credential is missing, malformed, expired, for another audience or signed by an unknown key."""


def generate_keypair() -> tuple[str, str]:
    """A fresh Ed25519 key pair as (private PEM, public PEM)."""
    key = Ed25519PrivateKey.generate()
    private = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    ).decode()
    public = (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )
    return private, public


def public_pem(private_pem: str) -> str:
    """The public key (PEM) of a private key (PEM)."""
    key = load_private_key(private_pem)
    return (
        key.public_key()
        .public_bytes(serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo)
        .decode()
    )


def load_private_key(pem: str) -> Ed25519PrivateKey:
    """An Ed25519 private key from PEM; ``ValueError`` for anything else."""
    key = serialization.load_pem_private_key(pem.encode(), password=None)
    if not isinstance(key, Ed25519PrivateKey):
        raise ValueError("the signing key must be an Ed25519 private key (PEM, PKCS#8)")
    return key


@dataclass(frozen=True)
class TrustedKey:
    """A public key this process accepts credentials from."""

    kid: str
    issuer: str
    key: Ed25519PublicKey
    not_after: datetime | None = None

    def usable(self, now: float) -> bool:
        """False once past ``not_after`` (a rotated-out key)."""
        return self.not_after is None or now <= self.not_after.timestamp()


def _parse_not_after(value: Any) -> datetime | None:
    if value in (None, ""):
        return None
    if isinstance(value, datetime):
        return value if value.tzinfo else value.replace(tzinfo=UTC)
    text = str(value)
    try:
        parsed = datetime.fromisoformat(text)
    except ValueError:
        parsed = datetime.combine(date.fromisoformat(text), datetime.max.time())
    return parsed if parsed.tzinfo else parsed.replace(tzinfo=UTC)


def parse_trusted_keys(raw: str | list[Mapping[str, Any]]) -> dict[str, TrustedKey]:
    """``DISTRETTO_TRUSTED_KEYS`` (JSON text or a list) → keys by kid; ``ValueError`` naming what is wrong."""
    items = json.loads(raw) if isinstance(raw, str) else raw
    if not isinstance(items, list):
        raise ValueError("DISTRETTO_TRUSTED_KEYS must be a JSON list of {kid, issuer, public_key, not_after?}")
    keys: dict[str, TrustedKey] = {}
    for i, item in enumerate(items):
        try:
            kid, issuer, pem = str(item["kid"]), str(item["issuer"]), str(item["public_key"])
        except (KeyError, TypeError):
            raise ValueError(f"DISTRETTO_TRUSTED_KEYS[{i}] needs kid, issuer and public_key") from None
        key = serialization.load_pem_public_key(pem.encode())
        if not isinstance(key, Ed25519PublicKey):
            raise ValueError(f"DISTRETTO_TRUSTED_KEYS[{i}] ({kid}) is not an Ed25519 public key")
        if issuer != "gateway" and not issuer.startswith("service:"):
            raise ValueError(f"DISTRETTO_TRUSTED_KEYS[{i}] ({kid}): issuer must be 'gateway' or 'service:<name>'")
        keys[kid] = TrustedKey(kid, issuer, key, _parse_not_after(item.get("not_after")))
    return keys


def trusted_key_entry(kid: str, issuer: str, public_key_pem: str, not_after: str | None = None) -> dict[str, str]:
    """One entry of ``DISTRETTO_TRUSTED_KEYS``."""
    entry = {"kid": kid, "issuer": issuer, "public_key": public_key_pem}
    if not_after:
        entry["not_after"] = not_after
    return entry


VERIFIED_CACHE_SIZE = 20_000
"""Credentials a :class:`Verifier` remembers as verified (the gateway reuses each for half its life)."""


@dataclass
class Verifier:
    """Checks ``X-Distretto-Identity`` credentials for one audience (this service).

    A credential verified once is remembered until it expires: the gateway reuses the credential it
    mints for a caller for half its life (:meth:`TokenSigner.mint_cached`), so a busy service sees the
    same credential many times, and the signature check (an Ed25519 verification plus the JWT
    parsing, the largest part of a small request's cost) is done once per credential. Only the exact
    text of a verified credential hits the cache; its expiry and its key's ``not_after`` are checked
    on every use, so a remembered credential is refused at the moment a fresh verification would
    refuse it.
    """

    audience: str
    keys: dict[str, TrustedKey]
    leeway: int = LEEWAY
    cache_size: int = VERIFIED_CACHE_SIZE
    _verified: dict[str, tuple[Principal, float, str]] = field(default_factory=dict, repr=False)

    def verify(self, token: str) -> Principal:
        """The principal a credential carries; :class:`InvalidCredential` otherwise."""
        hit = self._verified.get(token)
        if hit is not None:
            principal, expires, kid = hit
            now = time.time()
            trusted = self.keys.get(kid)
            if now <= expires + self.leeway and trusted is not None and trusted.usable(now):
                return principal
            self._verified.pop(token, None)
        principal, expires, kid = self._verify(token)
        if len(self._verified) >= self.cache_size:
            self._verified.clear()
        self._verified[token] = (principal, expires, kid)
        return principal

    def _verify(self, token: str) -> tuple[Principal, float, str]:
        try:
            header = jwt.get_unverified_header(token)
        except jwt.InvalidTokenError:
            raise InvalidCredential("the identity credential is not a JWT") from None
        if header.get("alg") != ALGORITHM:
            raise InvalidCredential(f"the identity credential must be signed with {ALGORITHM}")
        trusted = self.keys.get(str(header.get("kid", "")))
        if trusted is None:
            raise InvalidCredential("the identity credential names an unknown key")
        if not trusted.usable(time.time()):
            raise InvalidCredential(f"the key {trusted.kid} is no longer trusted")
        try:
            claims = jwt.decode(
                token,
                trusted.key,
                algorithms=[ALGORITHM],
                audience=self.audience,
                issuer=trusted.issuer,
                leeway=self.leeway,
                options={"require": ["exp", "iat", "aud", "iss", "sub", "role"]},
            )
        except jwt.ExpiredSignatureError:
            raise InvalidCredential("the identity credential has expired") from None
        except jwt.InvalidAudienceError:
            raise InvalidCredential(f"the identity credential is not for {self.audience}") from None
        except jwt.InvalidTokenError as exc:
            raise InvalidCredential(f"the identity credential is not valid ({exc})") from None
        sub, role = str(claims["sub"]), str(claims["role"])
        if role not in Role.__members__.values():
            raise InvalidCredential(f"unknown role {role!r}")
        if trusted.issuer.startswith("service:") and (sub != trusted.issuer or role != Role.SERVICE):
            raise InvalidCredential(f"a key of {trusted.issuer} may only assert {trusted.issuer}")
        if role == Role.SERVICE and sub != ("service:gateway" if trusted.issuer == "gateway" else trusted.issuer):
            raise InvalidCredential("only a service's own key may assert a service principal")
        org = claims.get("org")
        scopes = claims.get("scopes") or ()
        principal = Principal(
            id=sub,
            role=role,
            organisation_id=str(org) if org else None,
            scopes=tuple(str(s) for s in scopes),
        )
        return principal, float(claims["exp"]), trusted.kid


@dataclass
class TokenSigner:
    """Mints credentials with this process's signing key."""

    issuer: str
    """``gateway`` or ``service:<name>``."""
    kid: str
    private_key: Ed25519PrivateKey
    ttl: int = DEFAULT_TTL
    _cache: dict[tuple[str, str, str | None, tuple[str, ...], str], tuple[str, float]] = field(
        default_factory=dict, repr=False
    )

    @classmethod
    def from_pem(cls, issuer: str, kid: str, pem: str, ttl: int = DEFAULT_TTL) -> TokenSigner:
        """A signer from a PEM private key."""
        return cls(issuer=issuer, kid=kid, private_key=load_private_key(pem), ttl=ttl)

    def mint(self, principal: Principal, audience: str, ttl: int | None = None) -> str:
        """A fresh credential saying ``principal`` calls ``audience``."""
        now = int(time.time())
        claims: dict[str, Any] = {
            "iss": self.issuer,
            "sub": principal.id,
            "role": str(principal.role),
            "aud": audience,
            "iat": now,
            "exp": now + (ttl or self.ttl),
            "jti": uuid.uuid4().hex,
        }
        if principal.organisation_id:
            claims["org"] = principal.organisation_id
        if principal.scopes:
            claims["scopes"] = list(principal.scopes)
        return jwt.encode(claims, self.private_key, algorithm=ALGORITHM, headers={"kid": self.kid})

    def mint_cached(self, principal: Principal, audience: str) -> str:
        """A credential reused while more than half of its life is left (the gateway's hot path)."""
        key = (principal.id, str(principal.role), principal.organisation_id, principal.scopes, audience)
        now = time.time()
        hit = self._cache.get(key)
        if hit is not None and hit[1] > now:
            return hit[0]
        token = self.mint(principal, audience)
        if len(self._cache) > 50_000:
            self._cache.clear()
        self._cache[key] = (token, now + self.ttl / 2)
        return token

    def service_headers(self, audience: str) -> dict[str, str]:
        """Headers to call ``audience`` as this process itself (``service:<name>``, ``service:gateway``)."""
        own = self.issuer if self.issuer.startswith("service:") else f"service:{self.issuer}"
        principal = Principal(id=own, role=Role.SERVICE)
        return {IDENTITY_HEADER: self.mint_cached(principal, audience)}


def key_id(public_key_pem: str) -> str:
    """A key's id: the first 16 hex digits of the SHA-256 of its public key (no setting to get wrong)."""
    import hashlib

    return hashlib.sha256(public_key_pem.encode()).hexdigest()[:16]


def issuer_of(process: str) -> str:
    """``gateway`` for the gateway, ``service:<name>`` for every other process."""
    return "gateway" if process == "gateway" else f"service:{process}"


@dataclass
class Keyring:
    """One installation's signing keys, one per process (``make up`` and the tests generate them)."""

    private_keys: dict[str, str]
    """Process name → Ed25519 private key (PEM)."""

    @classmethod
    def generate(cls, names: list[str] | tuple[str, ...]) -> Keyring:
        """Fresh keys for ``names``."""
        return cls({name: generate_keypair()[0] for name in names})

    @classmethod
    def load_or_create(cls, path: Any, names: list[str] | tuple[str, ...]) -> Keyring:
        """The keys stored at ``path`` (JSON, owner-only), created once and completed with missing names."""
        import os
        from pathlib import Path

        file = Path(path)
        stored: dict[str, str] = json.loads(file.read_text()) if file.exists() else {}
        missing = [n for n in names if n not in stored]
        if missing or not file.exists():
            stored.update({n: generate_keypair()[0] for n in missing})
            file.parent.mkdir(parents=True, exist_ok=True)
            fd = os.open(str(file) + ".tmp", os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
            with os.fdopen(fd, "w") as out:
                json.dump(stored, out, indent=2)
            os.replace(str(file) + ".tmp", file)
        os.chmod(file, 0o600)
        return cls(stored)

    def trusted(self) -> list[dict[str, str]]:
        """The ``DISTRETTO_TRUSTED_KEYS`` entries for every key of the ring."""
        out = []
        for name, pem in self.private_keys.items():
            pub = public_pem(pem)
            out.append(trusted_key_entry(key_id(pub), issuer_of(name), pub))
        return out

    def env(self, name: str) -> dict[str, str]:
        """The environment a process ``name`` needs: its signing key and the trusted key set."""
        return {
            f"{name.upper()}_SIGNING_KEY": self.private_keys[name],
            "DISTRETTO_TRUSTED_KEYS": json.dumps(self.trusted()),
        }

    def signer(self, name: str, ttl: int = DEFAULT_TTL) -> TokenSigner:
        """The signer of process ``name``."""
        pem = self.private_keys[name]
        return TokenSigner.from_pem(issuer_of(name), key_id(public_pem(pem)), pem, ttl)
