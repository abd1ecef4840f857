"""Secrets kept in a service's database, encrypted with a key from the installation's secrets.

A value a service must be able to read back (a webhook signing secret it signs with) cannot be
hashed like a password; it is stored sealed instead: Fernet (AES-128-CBC + HMAC-SHA256, from the
maintained ``cryptography`` package) under a key derived with HKDF-SHA256 from a service secret
(``<PREFIX>SECRET_KEY``, generated per installation, never a default) and a purpose label, so one
secret can key several uses without them sharing a key. Sealing the same value twice gives two
different tokens (random IV); a token altered in the database, or read with another key, is refused
(:class:`SealError`), never silently turned into a wrong secret.

Several keys may be given: the first seals, every one opens (rotating the installation's key).
"""

from __future__ import annotations

import base64

from cryptography.fernet import Fernet, InvalidToken, MultiFernet
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF

TOKEN_PREFIX = "gAAAAA"
"""How every Fernet token begins (version byte 0x80 and the high bytes of its timestamp)."""


class SealError(ValueError):
    """A sealed value that cannot be opened: altered, or sealed under another key."""


def _fernet(secret: str, purpose: str) -> Fernet:
    key = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=purpose.encode()).derive(secret.encode())
    return Fernet(base64.urlsafe_b64encode(key))


class Sealer:
    """Seals and opens short text values for one purpose (e.g. ``"partners.webhook-secret"``)."""

    def __init__(self, purpose: str, *secrets: str) -> None:
        keys = [s for s in secrets if s]
        if not keys:
            raise ValueError("a sealer needs a key: the service's secret key is not set")
        self._box = MultiFernet([_fernet(s, purpose) for s in keys])

    def seal(self, value: str) -> str:
        """The encrypted, authenticated form of ``value`` (URL-safe text, about 1.4× + 80 chars)."""
        return self._box.encrypt(value.encode()).decode()

    def open(self, token: str) -> str:
        """The value sealed in ``token``; :class:`SealError` if it was altered or sealed under another key."""
        try:
            return self._box.decrypt(token.encode()).decode()
        except InvalidToken as exc:
            raise SealError(
                "a sealed value could not be decrypted: it was altered, or the service's secret key changed"
            ) from exc


def is_sealed(value: str) -> bool:
    """Whether ``value`` looks like a sealed token (a migration tells old clear values apart with it)."""
    return value.startswith(TOKEN_PREFIX)
