"""Assembly of the matchmaking service."""

from __future__ import annotations

from pathlib import Path

from fastapi import FastAPI

from distretto_shared.app import PeriodicJob, ServiceContext, ServiceSpec, cli
from distretto_shared.app import create_app as _create
from distretto_shared.context import Context
from distretto_shared.contracts import matchmaking as contracts
from matchmaking.config import Settings
from matchmaking.matches import api as matches_api
from matchmaking.matches import service as matches
from matchmaking.opportunities import api as opportunities_api
from matchmaking.opportunities import service as opportunities
from matchmaking.profiles import api as profiles_api
from matchmaking.profiles import consumers
from matchmaking.search import api as search_api
from matchmaking.search import service as search
from matchmaking.search.domain import FeedbackWeights
from matchmaking.search.embeddings import Encoder, shared_encoder
from matchmaking.search.engine import Engine

MIGRATIONS = Path(__file__).resolve().parents[2] / "migrations"


async def start_engine(ctx: ServiceContext) -> None:
    """Load the embedding model and rebuild the ranking index from the database."""
    settings: Settings = ctx.settings  # type: ignore[assignment]
    engine = Engine(
        bm25_weight=settings.bm25_weight,
        feedback=FeedbackWeights(settings.feedback_pair_weight, settings.feedback_counterpart_weight),
    )
    engine.merge_threshold = settings.delta_merge_threshold
    ctx.provide(engine)
    ctx.provide(shared_encoder(settings.embedding_threads), Encoder)
    await search.rebuild_index(ctx.context())
    await matches.refresh_match_gauge(ctx.context())


async def expire(ctx: Context[Settings]) -> None:
    """Periodic: expire opportunities past their expiry day."""
    await opportunities.expire_due(ctx)


async def merge(ctx: Context[Settings]) -> None:
    """Periodic: fold the BM25 delta into the main index."""
    await search.merge_delta(ctx)


SPEC = ServiceSpec(
    name="matchmaking",
    settings_cls=Settings,
    routers=[opportunities_api.router, search_api.router, matches_api.router, profiles_api.router],
    migrations=MIGRATIONS,
    consumers=[consumers.consumers],
    topics=[contracts.OPPORTUNITY_TOPIC, contracts.MATCH_TOPIC],
    periodic=[
        PeriodicJob("expire-opportunities", "expiry_check_interval", expire),
        PeriodicJob("merge-bm25-delta", "merge_interval", merge),
    ],
    on_startup=[start_engine],
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
