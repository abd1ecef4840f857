"""What every use case of the newsletter shares: the context type, the public caller, its own errors, the wake-up."""

from __future__ import annotations

from dataclasses import dataclass
from datetime import UTC, datetime

from distretto_shared.context import Context
from distretto_shared.web import DomainError
from newsletter.config import Settings
from newsletter.delivery.engine import DeliveryEngine


class RateLimited(DomainError):
    """Too many sign-ups from this address or this client."""

    status = 429
    code = "rate_limited"

    def __init__(self, message: str, retry_after: int) -> None:
        super().__init__(message, details={"retry_after": retry_after})
        self.retry_after = retry_after


class Gone(DomainError):
    """A link that was valid once and has expired."""

    status = 410
    code = "gone"


@dataclass(frozen=True)
class Client:
    """Who is on the other end of a public request."""

    address: str | None
    user_agent: str | None


def aware(value: datetime | None) -> datetime | None:
    if value is not None and value.tzinfo is None:
        return value.replace(tzinfo=UTC)
    return value


Ctx = Context[Settings]
"""What every use case receives: the caller, the database, the settings (docs/service-guide.md)."""


def engine_of(ctx: Ctx) -> DeliveryEngine | None:
    return ctx.find(DeliveryEngine)


def wake(ctx: Ctx) -> None:
    engine = engine_of(ctx)
    if engine is not None:
        engine.wake()
