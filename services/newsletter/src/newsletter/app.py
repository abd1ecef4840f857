"""Assembly of the newsletter service."""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

from distretto_shared.app import PeriodicJob, ServiceContext, ServiceSpec, cli
from distretto_shared.app import create_app as _create
from distretto_shared.context import Context
from distretto_shared.contracts import matchmaking, membership, projects
from distretto_shared.contracts import newsletter as contracts
from distretto_shared.logging import get_logger
from newsletter import api, audience, consumers, segments
from newsletter.campaigns import service as campaigns
from newsletter.config import Settings
from newsletter.delivery.engine import DeliveryEngine
from newsletter.digest.service import build_digest
from newsletter.members import service as members

log = get_logger(__name__)

MIGRATIONS = Path(__file__).resolve().parents[2] / "migrations"


async def start_engine(ctx: ServiceContext) -> None:
    ctx.provide(members.ContactFetch())
    ctx.tasks.append(asyncio.create_task(members.contact_fetcher(ctx.context()), name="contact-fetch"))
    settings: Settings = ctx.settings  # type: ignore[assignment]
    if settings.delivery_enabled:
        engine = DeliveryEngine(ctx.db, settings, source=ctx.source)
        ctx.provide(engine)
        # A restart after a crash: rows a dead worker held come back once their lease ran out (the
        # engine's lease keeper goes on doing so, in every instance, four times per lease).
        await engine.release_stale()
        await engine.start()


async def stop_engine(ctx: ServiceContext) -> None:
    engine: DeliveryEngine | None = ctx.singletons.pop(DeliveryEngine, None)
    if engine is not None:
        await engine.stop()


async def scheduler(ctx: Context[Settings]) -> None:
    """Start due campaigns, finish done ones, refresh the gauges."""
    await campaigns.start_due_campaigns(ctx)
    await campaigns.finish_done_campaigns(ctx)
    await campaigns.update_queue_metrics(ctx)


async def digest(ctx: Context[Settings]) -> None:
    if ctx.settings.digest_enabled:
        campaign = await build_digest(ctx)
        if campaign is not None:
            log.info("digest built", campaign_id=campaign.id, status=campaign.status)


SPEC = ServiceSpec(
    name="newsletter",
    settings_cls=Settings,
    routers=[api.router, segments.router],
    migrations=MIGRATIONS,
    consumers=[consumers.consumers, audience.consumers],
    topics=[
        contracts.SUBSCRIBER_TOPIC,
        contracts.CAMPAIGN_TOPIC,
        contracts.SEGMENT_TOPIC,
        membership.ORGANISATION_TOPIC,
        membership.CONTACT_TOPIC,
        projects.PROJECT_TOPIC,
        matchmaking.OPPORTUNITY_TOPIC,
    ],
    published_events=[
        contracts.SubscriberConfirmed,
        contracts.SubscriberUnsubscribed,
        contracts.SubscriberErased,
        contracts.BounceRecorded,
        contracts.CampaignStarted,
        contracts.CampaignPublished,
        contracts.CampaignFinished,
        contracts.DeliveryFailed,
        contracts.SegmentCreated,
        contracts.SegmentChanged,
    ],
    periodic=[
        PeriodicJob("newsletter-scheduler", "scheduler_interval", scheduler),
        PeriodicJob("newsletter-digest", "digest_interval_seconds", digest),
    ],
    on_startup=[start_engine],
    on_shutdown=[stop_engine],
    personal_tables=[
        "member_contact",
        "subscriber",
        "subscription",
        "subscriber_interest",
        "consent_record",
        "bounce",
        "delivery",
    ],
    title="Distretto newsletter",
    description="Subscribers with double opt-in, campaigns delivered exactly once, one-click unsubscribe, automation",
)


def create_app(settings: Settings | None = None) -> Any:
    """The newsletter's ASGI app."""
    return _create(SPEC, settings)


main = cli(SPEC)
