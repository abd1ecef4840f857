"""Pure rules about people: how an erased person is still recognised without their address."""

from __future__ import annotations

import hashlib


def email_sha256(email: str) -> str:
    """SHA-256 of the lower-cased, trimmed email: how services find an erased person without the address."""
    return hashlib.sha256(email.strip().lower().encode()).hexdigest()
