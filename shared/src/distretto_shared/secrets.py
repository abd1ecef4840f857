"""Secrets that are never defaults: which settings are secrets, and when a value is too weak to run with.

A service's settings class names its secrets in ``secret_settings`` (a tuple of
:class:`Secret`). At start-up the backbone asks :func:`secret_problems`; outside
development mode (``DISTRETTO_DEV_MODE``, off by default) any problem stops the
process with a message naming the variable to set. In development mode a missing
secret is replaced by a random one for the life of the process (and said so in
the log), and a weak one is only warned about.

``make up`` generates every secret once per installation (``var/secrets/``);
production sets them from its own secret store.
"""

from __future__ import annotations

import secrets
from dataclasses import dataclass
from typing import Any

KNOWN_WEAK: frozenset[str] = frozenset(
    {
        # values that were shipped as defaults at some point, or that people type first
        "change-me-distretto-gateway-secret-at-least-32-bytes",
        "change-me-newsletter-secret",
        "distretto-admin",
        "distretto",
        "admin",
        "administrator",
        "password",
        "password1",
        "changeme",
        "change-me",
        "secret",
        "test-secret",
        "letmein",
        "123456",
        "12345678",
        "qwerty",
    }
)
"""Values refused whatever their length (compared case-insensitively)."""


@dataclass(frozen=True)
class Secret:
    """One secret setting of a service."""

    field: str
    """The settings field (its variable is ``<PREFIX><FIELD>``, e.g. ``NEWSLETTER_SECRET_KEY``)."""
    required: bool = True
    """False: empty means the feature it protects is off (e.g. no bootstrap admin)."""
    min_length: int = 32
    what: str = ""
    """What it protects, for the message."""


def env_name(settings: Any, field: str) -> str:
    """The environment variable of a settings field (``NEWSLETTER_`` + ``SECRET_KEY``)."""
    prefix = str(settings.model_config.get("env_prefix", ""))
    return (prefix + field).upper()


def weakness(value: str, min_length: int) -> str | None:
    """Why ``value`` is not good enough as a secret, or ``None`` when it is."""
    if value.strip().lower() in KNOWN_WEAK or value.strip().lower().startswith("change-me"):
        return "is a published default or a well-known weak value"
    if len(value) < min_length:
        return f"is shorter than {min_length} characters"
    if len(set(value)) < 6:
        return "has too few distinct characters"
    return None


def secret_problems(settings: Any) -> list[str]:
    """Every missing or weak secret of ``settings``, each as a sentence naming the variable to set."""
    problems = []
    for spec in getattr(type(settings), "secret_settings", ()):
        value = str(getattr(settings, spec.field, "") or "")
        name = env_name(settings, spec.field)
        purpose = f" ({spec.what})" if spec.what else ""
        if not value:
            if spec.required:
                problems.append(
                    f"{name} is not set{purpose}: set it to a random value of {spec.min_length}+ characters"
                )
            continue
        why = weakness(value, spec.min_length)
        if why:
            problems.append(f"{name} {why}{purpose}: set it to a random value of {spec.min_length}+ characters")
    return problems


def fill_for_development(settings: Any) -> list[str]:
    """Development mode only: give every missing required secret a random value; the names filled."""
    filled = []
    for spec in getattr(type(settings), "secret_settings", ()):
        if spec.required and not getattr(settings, spec.field, ""):
            setattr(settings, spec.field, secrets.token_urlsafe(max(32, spec.min_length)))
            filled.append(env_name(settings, spec.field))
    return filled


def new_secret(nbytes: int = 32) -> str:
    """A fresh random secret (URL-safe text, ``nbytes`` of entropy)."""
    return secrets.token_urlsafe(nbytes)
