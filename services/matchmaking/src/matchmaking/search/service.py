"""Use cases of the ranking: rebuild and merge the index, rank counterparts, propose-time scoring.

The ranking engine (an in-memory index per instance) follows the database (see
:mod:`matchmaking.search.indexing`): a writer indexes its own change after the
commit, every instance follows the change log, start-up rebuilds from the tables.
No request waits for the encoder.
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass

from prometheus_client import Histogram
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select

from distretto_shared.logging import get_logger
from distretto_shared.waits import woken
from distretto_shared.web import Conflict, Invalid, NotFound, Page, PageParams, make_page
from matchmaking.anonymise import NamePatterns, anonymise_text
from matchmaking.common import Ctx, today
from matchmaking.opportunities.domain import OpportunityType
from matchmaking.opportunities.models import (
    Opportunity,
)
from matchmaking.opportunities.repository import opportunity_for
from matchmaking.profiles.models import Organisation
from matchmaking.profiles.repository import org_names
from matchmaking.search import indexing
from matchmaking.search.document import Document, Filter
from matchmaking.search.domain import counterpart_types, opportunity_types_for_organisation, profile_kinds
from matchmaking.search.engine import Engine, Hit
from matchmaking.search.indexing import OPPORTUNITY, PROFILE, IndexState
from matchmaking.search.models import IndexStats, RankedCounterpart, ScoreParts

log = get_logger(__name__)

QUERY_SECONDS = Histogram(
    "distretto_matchmaking_query_duration_seconds",
    "Ranking query latency (index work only)",
    ["target"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)


async def rebuild_index(ctx: Ctx) -> int:
    """Fill this instance's index from the database (texts without a vector are queued, not encoded here)."""
    return await indexing.rebuild(ctx)


async def merge_delta(ctx: Ctx) -> None:
    """Fold the BM25 delta into the main index, refit the dense projection when due (in a worker thread)."""
    index = ctx.get(Engine).index
    if not index.dirty:
        return
    built = await asyncio.to_thread(index.build, index.snapshot())
    index.install(built)


async def merge_forever(ctx: Ctx) -> None:
    """Task of every instance (each has its own index, so this is no leader's job): merge the BM25
    delta every ``merge_interval`` seconds, and at once when writes left it at the engine's threshold
    (``Engine.on_merge_due``: the build runs here, in a worker thread, not in the writing request)."""
    engine = ctx.get(Engine)
    due = asyncio.Event()
    engine.on_merge_due = due.set
    try:
        while True:
            await woken(due, ctx.settings.merge_interval)
            due.clear()
            try:
                await merge_delta(ctx)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                log.exception("merging the BM25 delta failed", error=repr(exc))
    finally:
        engine.on_merge_due = None


# -- ranking -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RankFilters:
    """Filters a user may add to a ranking."""

    sector: str | None = None
    kind: str | None = None
    country: str | None = None
    include_expired: bool = False


def filters_for_opportunity(o: Opportunity, target: str, f: RankFilters) -> list[Filter]:
    kind = OpportunityType(o.opportunity_type)
    sectors = frozenset({f.sector}) if f.sector else None
    valid_on = None if f.include_expired else today()
    out = []
    opp_types = counterpart_types(kind)
    if target in ("all", "opportunities") and opp_types and f.kind is None:
        out.append(
            Filter(
                kind=OPPORTUNITY,
                opportunity_types=frozenset(t.value for t in opp_types),
                sectors=sectors,
                country=f.country,
                exclude_owner=o.owner_organisation_id,
                exclude_key=f"{OPPORTUNITY}:{o.id}",
                valid_on=valid_on,
            )
        )
    if target in ("all", "profiles"):
        kinds = profile_kinds(kind)
        if f.kind is not None:
            kinds = frozenset({f.kind}) if kinds is None or f.kind in kinds else frozenset()
        if kinds is None or kinds:
            out.append(
                Filter(
                    kind=PROFILE,
                    org_kinds=kinds,
                    sectors=sectors,
                    country=f.country,
                    exclude_owner=o.owner_organisation_id,
                    valid_on=today(),
                )
            )
    return out


def _ranked(hit: Hit, title: str) -> RankedCounterpart:
    return RankedCounterpart(
        counterpart_type=hit.kind,
        counterpart_id=hit.entity_id,
        title=title,
        score=hit.score,
        score_parts=ScoreParts(
            bm25=hit.bm25,
            bm25_normalised=hit.bm25_normalised,
            dense=hit.dense,
            fused=hit.fused,
            feedback=hit.feedback,
        ),
        explanation=hit.explanation,
    )


async def _titles(ctx: Ctx, session: AsyncSession, hits: list[Hit]) -> dict[str, str]:
    """Titles of ranked counterparts: another organisation's opportunity anonymised, as in public."""
    opp_ids = [h.entity_id for h in hits if h.kind == OPPORTUNITY]
    org_ids = [h.entity_id for h in hits if h.kind == PROFILE]
    titles: dict[str, str] = {}
    if opp_ids:
        names: NamePatterns | None = None
        rows = await session.execute(
            select(Opportunity.id, Opportunity.title, Opportunity.owner_organisation_id).where(
                col(Opportunity.id).in_(opp_ids)
            )
        )
        for oid, title, owner in rows.all():
            if not ctx.acts_for(owner):
                names = names if names is not None else await org_names(ctx, session)
                title = anonymise_text(title, names)
            titles[f"{OPPORTUNITY}:{oid}"] = title
    if org_ids:
        profiles = await session.execute(
            select(Organisation.organisation_id, Organisation.name).where(
                col(Organisation.organisation_id).in_(org_ids)
            )
        )
        for oid, name in profiles.all():
            titles[f"{PROFILE}:{oid}"] = name
    return titles


def merge_rankings(ctx: Ctx, query: Document, filters: list[Filter], limit: int, offset: int) -> tuple[list[Hit], int]:
    hits: list[Hit] = []
    total = 0
    for flt in filters:
        ranking = ctx.get(Engine).rank(query, flt, limit=offset + limit, offset=0)
        hits += ranking.hits
        total += ranking.total
    hits.sort(key=lambda h: (-h.score, h.key))
    return hits[offset : offset + limit], total


async def rank_for_opportunity(
    ctx: Ctx, opportunity_id: str, page: PageParams, *, target: str = "all", filters: RankFilters | None = None
) -> Page[RankedCounterpart]:
    """The best counterpart opportunities and competence profiles for an opportunity."""
    f = filters or RankFilters()
    async with ctx.db.read() as session:
        o = await opportunity_for(ctx, session, opportunity_id, "rank counterparts of this opportunity")
        query = ctx.get(Engine).index.get(f"{OPPORTUNITY}:{o.id}")
        if query is None:
            raise Conflict("the opportunity is not indexed yet; retry in a moment")
        started = time.perf_counter()
        hits, total = merge_rankings(ctx, query, filters_for_opportunity(o, target, f), page.limit, page.offset)
        QUERY_SECONDS.labels("opportunity").observe(time.perf_counter() - started)
        titles = await _titles(ctx, session, hits)
    return make_page([_ranked(h, titles.get(h.key, "")) for h in hits], total, page)


async def rank_for_organisation(
    ctx: Ctx, organisation_id: str, page: PageParams, *, filters: RankFilters | None = None
) -> Page[RankedCounterpart]:
    """The published opportunities that fit an organisation's competence profile."""
    f = filters or RankFilters()
    ctx.require_private_of(organisation_id, "rank opportunities for this organisation")
    async with ctx.db.read() as session:
        org = await session.get(Organisation, organisation_id)
        if org is None:
            raise NotFound(f"organisation {organisation_id} not known to matchmaking")
        if org.status != "active":
            raise Conflict(f"organisation {organisation_id} is not an active member ({org.status})")
        query = ctx.get(Engine).index.get(f"{PROFILE}:{organisation_id}")
        if query is None:
            raise Conflict("the organisation's profile is not indexed yet; retry in a moment")
        types = opportunity_types_for_organisation(org.kind)
        flt = Filter(
            kind=OPPORTUNITY,
            opportunity_types=frozenset(t.value for t in types),
            sectors=frozenset({f.sector}) if f.sector else None,
            country=f.country,
            exclude_owner=organisation_id,
            valid_on=None if f.include_expired else today(),
        )
        started = time.perf_counter()
        ranking = ctx.get(Engine).rank(query, flt, limit=page.limit, offset=page.offset)
        QUERY_SECONDS.labels("organisation").observe(time.perf_counter() - started)
        titles = await _titles(ctx, session, ranking.hits)
    return make_page([_ranked(h, titles.get(h.key, "")) for h in ranking.hits], ranking.total, page)


async def index_stats(ctx: Ctx) -> IndexStats:
    """What the engine holds."""
    ctx.require_staff("inspect the ranking index")
    index = ctx.get(Engine).index
    state = ctx.get(IndexState)
    return IndexStats(
        opportunities=index.count(OPPORTUNITY),
        profiles=index.count(PROFILE),
        bm25_main_rows=index.main.docs,
        bm25_delta_rows=len(index.delta),
        items=index.live_items,
        items_pending=state.items_pending,
        change_position=state.cursor,
        changes_behind=max(0, await indexing.change_position(ctx) - state.cursor),
    )


def score_pair(ctx: Ctx, o: Opportunity, counterpart_type: str, counterpart_id: str) -> Hit:
    query = ctx.get(Engine).index.get(f"{OPPORTUNITY}:{o.id}")
    if query is None:
        raise Conflict("the opportunity is not indexed yet; retry in a moment")
    key = f"{counterpart_type}:{counterpart_id}"
    target = "opportunities" if counterpart_type == OPPORTUNITY else "profiles"
    for flt in filters_for_opportunity(o, target, RankFilters()):
        ranking = ctx.get(Engine).rank(query, flt, focus_key=key)
        if ranking.hits:
            return ranking.hits[0]
    raise Invalid(
        f"{counterpart_type} {counterpart_id} is not a possible counterpart of this opportunity "
        "(wrong type pairing, expired, not an active member, or the same organisation)"
    )
