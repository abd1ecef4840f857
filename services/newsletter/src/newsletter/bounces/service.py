"""Use cases of bounces: record one in the caller's transaction, take a provider's report, list them."""

from __future__ import annotations

from datetime import timedelta

import sqlalchemy as sa
from sqlmodel import col, func, select

from distretto_shared.web import PageParams
from newsletter.bounces.models import Bounce, BouncePublic, BounceReport, WebhookReceipt
from newsletter.bounces.repository import record_bounce_in
from newsletter.campaigns.models import Campaign
from newsletter.context import Ctx
from newsletter.subscribers.service import by_email
from newsletter.tables import utcnow

# -- bounces -------------------------------------------------------------------------


WEBHOOK_RECEIPT_KEEP = timedelta(minutes=15)
"""Longer than the five minutes a signed message stays acceptable: an older id cannot come back."""


async def report_bounce(ctx: Ctx, report: BounceReport, *, message_id: str) -> None:
    """The provider's (verified) bounce report; an unknown address, or a replayed message, changes nothing."""
    settings = ctx.settings
    async with ctx.db.transaction() as session:
        await session.execute(
            sa.delete(WebhookReceipt).where(col(WebhookReceipt.received_at) < utcnow() - WEBHOOK_RECEIPT_KEEP)
        )
        if await session.get(WebhookReceipt, message_id[:200]) is not None:
            return
        session.add(WebhookReceipt(id=message_id[:200]))
        sub = await by_email(session, report.email)
        if sub is None:
            return
        campaign_id = report.campaign_id
        if campaign_id and await session.get(Campaign, campaign_id) is None:
            campaign_id = None
        await record_bounce_in(
            session,
            settings,
            ctx.source,
            subscriber_id=sub.id,
            kind=report.kind,
            reason=report.reason,
            campaign_id=campaign_id,
            origin=f"webhook:{settings.bounce_webhook_provider}"[:20],
        )


async def list_bounces(ctx: Ctx, page: PageParams) -> tuple[list[BouncePublic], int]:
    async with ctx.db.read() as session:
        total = (await session.execute(select(func.count()).select_from(Bounce))).scalar_one()
        rows = (
            (
                await session.execute(
                    select(Bounce).order_by(col(Bounce.at).desc()).offset(page.offset).limit(page.limit)
                )
            )
            .scalars()
            .all()
        )
    return [BouncePublic(**r.model_dump()) for r in rows], total
