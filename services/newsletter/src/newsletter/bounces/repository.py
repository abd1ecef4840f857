"""Bounces written in the caller's transaction: the bounce row, the subscriber's suppression, the events."""

from __future__ import annotations

from sqlalchemy.ext.asyncio import AsyncSession

from distretto_shared.contracts import newsletter as contracts
from distretto_shared.outbox import add_event
from distretto_shared.web import NotFound
from newsletter import domain, metrics
from newsletter.bounces.models import Bounce
from newsletter.config import Settings
from newsletter.subscribers.models import Subscriber
from newsletter.tables import utcnow

# -- bounces -------------------------------------------------------------------------


async def record_bounce_in(
    session: AsyncSession,
    settings: Settings,
    source: str,
    *,
    subscriber_id: str,
    kind: domain.BounceKind,
    reason: str,
    campaign_id: str | None,
    origin: str,
) -> tuple[Bounce, bool]:
    """Record a bounce in the caller's transaction; suppress when the rule says so."""
    sub = await session.get(Subscriber, subscriber_id)
    if sub is None:
        raise NotFound("no such subscriber")
    bounce = Bounce(subscriber_id=sub.id, campaign_id=campaign_id, kind=kind.value, source=origin, reason=reason[:1000])
    if kind == domain.BounceKind.SOFT:
        sub.soft_bounces += 1
    newly = False
    if not sub.suppressed and domain.suppresses(kind, sub.soft_bounces, settings.soft_bounce_limit):
        sub.suppressed, sub.suppressed_reason, newly = (
            True,
            f"{kind.value}-bounce" if kind != "complaint" else "complaint",
            True,
        )
        metrics.SUPPRESSED.labels(kind.value).inc()
    bounce.suppressed = sub.suppressed  # the address is suppressed after this bounce (as BounceRecorded says)
    session.add(bounce)
    sub.updated_at = utcnow()
    metrics.BOUNCED.labels(kind.value).inc()
    add_event(
        session,
        contracts.BounceRecorded(subscriber_id=sub.id, kind=kind.value, suppressed=sub.suppressed),
        source=source,
    )
    if newly and kind == domain.BounceKind.COMPLAINT:
        add_event(session, contracts.SubscriberUnsubscribed(subscriber_id=sub.id, method="complaint"), source=source)
    return bounce, sub.suppressed
