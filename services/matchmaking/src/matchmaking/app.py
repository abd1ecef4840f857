"""Assembly of the matchmaking service."""

from __future__ import annotations

import asyncio
from pathlib import Path

from fastapi import FastAPI
from threadpoolctl import threadpool_limits

from distretto_shared import metrics
from distretto_shared.app import PeriodicJob, ServiceContext, ServiceSpec, cli
from distretto_shared.app import create_app as _create
from distretto_shared.context import Context
from distretto_shared.contracts import matchmaking as contracts
from matchmaking import encoder_process
from matchmaking.config import Settings
from matchmaking.matches import api as matches_api
from matchmaking.matches import service as matches
from matchmaking.opportunities import api as opportunities_api
from matchmaking.opportunities import service as opportunities
from matchmaking.profiles import api as profiles_api
from matchmaking.profiles import consumers
from matchmaking.profiles.names import OrganisationNames
from matchmaking.search import api as search_api
from matchmaking.search import indexing
from matchmaking.search import service as search
from matchmaking.search.domain import FeedbackWeights
from matchmaking.search.embeddings import Encoder, shared_encoder
from matchmaking.search.engine import Engine

MIGRATIONS = Path(__file__).resolve().parents[2] / "migrations"


async def start_engine(ctx: ServiceContext) -> None:
    """Load the embedding model, rebuild the ranking index from the database, start the index's
    follower (the change log) and encoder worker (the queue of texts without a vector)."""
    settings: Settings = ctx.settings  # type: ignore[assignment]
    threadpool_limits(limits=settings.blas_threads, user_api="blas")
    engine = Engine(
        bm25_weight=settings.bm25_weight,
        feedback=FeedbackWeights(settings.feedback_pair_weight, settings.feedback_counterpart_weight),
    )
    engine.merge_threshold = settings.delta_merge_threshold
    ctx.provide(engine)
    ctx.provide(shared_encoder(settings.embedding_threads), Encoder)
    state = indexing.IndexState()
    ctx.provide(state)
    ctx.provide(OrganisationNames(full_reload_after=settings.index_change_retention / 2))
    await search.rebuild_index(ctx.context())
    await matches.refresh_match_gauge(ctx.context())
    ctx.tasks.append(asyncio.create_task(indexing.follow(ctx.context()), name="index-follower"))
    ctx.tasks.append(asyncio.create_task(search.merge_forever(ctx.context()), name="merge-bm25-delta"))
    if settings.index_encoder and settings.index_encoder_process:
        ctx.provide(encoder_process.EncoderChild())
        ctx.tasks.append(asyncio.create_task(encoder_process.supervise(ctx.context()), name="index-encoder-process"))
    elif settings.index_encoder:
        ctx.tasks.append(asyncio.create_task(indexing.encode_forever(ctx.context()), name="index-encoder"))

    async def refresh_backlog() -> None:
        indexing.update_gauges(ctx.context())
        indexing.ENCODE_BACKLOG.set(await indexing.backlog(ctx.context()))

    state.on_stop.append(metrics.on_scrape(refresh_backlog, min_interval=1.0))


async def stop_engine(ctx: ServiceContext) -> None:
    """Remove the index's scrape hook."""
    for stop in ctx.singletons[indexing.IndexState].on_stop:
        stop()


async def expire(ctx: Context[Settings]) -> None:
    """Periodic: expire opportunities past their expiry day."""
    await opportunities.expire_due(ctx)


async def prune(ctx: Context[Settings]) -> None:
    """Periodic (one leading instance): prune the index change log and the queue of unused texts."""
    await indexing.prune(ctx)


SPEC = ServiceSpec(
    name="matchmaking",
    settings_cls=Settings,
    routers=[opportunities_api.router, search_api.router, matches_api.router, profiles_api.router],
    migrations=MIGRATIONS,
    consumers=[consumers.consumers],
    topics=[contracts.OPPORTUNITY_TOPIC, contracts.MATCH_TOPIC],
    periodic=[
        PeriodicJob("expire-opportunities", "expiry_check_interval", expire),
        PeriodicJob("prune-index-log", "merge_interval", prune),
    ],
    on_startup=[start_engine],
    on_shutdown=[stop_engine],
    title="Distretto matchmaking",
    description="Opportunities, competence profiles, hybrid ranked matches with explanations, partner search.",
    published_events=[
        contracts.OpportunityPublished,
        contracts.OpportunityRenewed,
        contracts.OpportunityExpired,
        contracts.OpportunityWithdrawn,
        contracts.MatchProposed,
        contracts.MatchAccepted,
        contracts.MatchDeclined,
        contracts.MeetingScheduled,
        contracts.MeetingHeld,
    ],
)


def create_app(settings: Settings | None = None) -> FastAPI:
    """The matchmaking ASGI app."""
    return _create(SPEC, settings)


main = cli(SPEC)
