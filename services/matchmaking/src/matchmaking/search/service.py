"""Use cases of the ranking: rebuild and merge the index, rank counterparts, propose-time scoring.

The ranking engine (an in-memory index) follows the database: every use case
updates it only after its transaction committed, and start-up rebuilds it from
the tables (stored embeddings are reused when the text did not change).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass
from typing import Any

from prometheus_client import Histogram
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select

from distretto_shared.logging import get_logger
from distretto_shared.web import Conflict, Invalid, NotFound, Page, PageParams, make_page
from matchmaking.anonymise import anonymise_text
from matchmaking.common import Ctx, today
from matchmaking.matches.models import (
    Match,
    MatchFeedback,
)
from matchmaking.opportunities.domain import OpportunityType
from matchmaking.opportunities.models import (
    Opportunity,
)
from matchmaking.opportunities.repository import opportunity_for
from matchmaking.profiles.models import Organisation, Participation, Project
from matchmaking.profiles.repository import org_names
from matchmaking.search.document import Document, Filter
from matchmaking.search.domain import counterpart_types, opportunity_types_for_organisation, profile_kinds
from matchmaking.search.embeddings import Encoder, from_bytes, text_hash, to_bytes
from matchmaking.search.engine import Engine, Hit
from matchmaking.search.indexing import (
    OPPORTUNITY,
    PROFILE,
    counterpart_key,
    opportunity_document,
    opportunity_text,
    profile_document,
    profile_text,
    query_key,
    update_gauges,
)
from matchmaking.search.models import IndexStats, RankedCounterpart, ScoreParts

log = get_logger(__name__)

QUERY_SECONDS = Histogram(
    "distretto_matchmaking_query_duration_seconds",
    "Ranking query latency (index work only)",
    ["target"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)


async def rebuild_index(ctx: Ctx) -> int:
    """Fill the engine from the database (missing or stale embeddings are computed and stored)."""
    engine = ctx.get(Engine)
    async with ctx.db.transaction() as session:
        opportunities = list((await session.execute(select(Opportunity).order_by(Opportunity.id))).scalars())
        orgs = list(
            (
                await session.execute(
                    select(Organisation).where(Organisation.status == "active").order_by(Organisation.organisation_id)
                )
            ).scalars()
        )
        projects = {p.project_id: p for p in (await session.execute(select(Project))).scalars()}
        by_org: dict[str, list[Project]] = {}
        for part in (await session.execute(select(Participation))).scalars():
            if part.project_id in projects:
                by_org.setdefault(part.organisation_id, []).append(projects[part.project_id])
        texts: list[tuple[Any, str]] = []
        for o in opportunities:
            texts.append((o, opportunity_text(o)))
        for org in orgs:
            org_projects = sorted(by_org.get(org.organisation_id, []), key=lambda p: p.project_id)
            texts.append((org, profile_text(org, org_projects)))
        stale = [(row, text) for row, text in texts if row.embedded_hash != text_hash(text) or not row.embedding]
        if stale:
            vectors = await asyncio.to_thread(ctx.get(Encoder).encode, [t for _, t in stale])
            for (row, text), vector in zip(stale, vectors, strict=True):
                row.embedding = to_bytes(vector)
                row.embedded_hash = text_hash(text)
                session.add(row)
        for o in opportunities:
            engine.index.upsert(opportunity_document(o, from_bytes(o.embedding)))
        for org in orgs:
            org_projects = sorted(by_org.get(org.organisation_id, []), key=lambda p: p.project_id)
            engine.index.upsert(profile_document(org, org_projects, from_bytes(org.embedding)))
        feedback = list(
            (
                await session.execute(
                    select(MatchFeedback, Match).join(Match, col(Match.id) == col(MatchFeedback.match_id))
                )
            ).all()
        )
        for fb, match in feedback:
            vote = 1 if fb.useful else -1
            engine.feedback.add(query_key(match), counterpart_key(match), vote, engine.lean_of(match.score_parts or {}))
    engine.index.merge()
    update_gauges(ctx)
    log.info("index rebuilt", opportunities=len(opportunities), profiles=len(orgs), embedded=len(stale))
    return len(opportunities) + len(orgs)


async def merge_delta(ctx: Ctx) -> None:
    """Fold the BM25 delta into the main index, refit the dense projection when due (in a worker thread)."""
    index = ctx.get(Engine).index
    if not index.dirty:
        return
    built = await asyncio.to_thread(index.build, index.snapshot())
    index.install(built)


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
        names: list[str] | None = None
        rows = await session.execute(
            select(Opportunity.id, Opportunity.title, Opportunity.owner_organisation_id).where(
                col(Opportunity.id).in_(opp_ids)
            )
        )
        for oid, title, owner in rows.all():
            if not ctx.acts_for(owner):
                names = names if names is not None else await org_names(session)
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


def index_stats(ctx: Ctx) -> IndexStats:
    """What the engine holds."""
    ctx.require_staff("inspect the ranking index")
    index = ctx.get(Engine).index
    return IndexStats(
        opportunities=index.count(OPPORTUNITY),
        profiles=index.count(PROFILE),
        bm25_main_rows=index.main.docs,
        bm25_delta_rows=len(index.delta),
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
