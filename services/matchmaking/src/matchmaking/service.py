# Over 500 lines: the use cases of several aggregates (profiles, opportunities, matches); the split
# into a package per aggregate is open work of the service-shape issue.
"""Use cases of the matchmaking service: one unit of work each.

The ranking engine (an in-memory index) follows the database: every use case
updates it only after its transaction committed, and start-up rebuilds it from
the tables (stored embeddings are reused when the text did not change).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, date, datetime
from typing import Any

from prometheus_client import Counter, Gauge, Histogram
from sqlalchemy import and_, delete, event, func, or_
from sqlalchemy.exc import IntegrityError
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select

from distretto_shared.context import Context
from distretto_shared.contracts import matchmaking as contracts
from distretto_shared.contracts.membership import OrganisationProfile
from distretto_shared.contracts.projects import ProjectSummary
from distretto_shared.logging import get_logger
from distretto_shared.outbox import add_event
from distretto_shared.web import Conflict, Invalid, NotFound, Page, PageParams, make_page
from matchmaking import domain
from matchmaking.anonymise import anonymise_list, anonymise_text
from matchmaking.config import Settings
from matchmaking.domain import Decision, MatchState, OpportunityStatus, OpportunityType, Side
from matchmaking.embeddings import Encoder, from_bytes, text_hash, to_bytes
from matchmaking.index import Document, Filter
from matchmaking.models import (
    FeedbackRequest,
    IndexStats,
    Match,
    MatchCreate,
    MatchFeedback,
    MatchPublic,
    MeetingHeldRequest,
    MeetingRequest,
    Opportunity,
    OpportunityAnonymous,
    OpportunityCreate,
    OpportunityPublic,
    OpportunityUpdate,
    Organisation,
    OrganisationPublic,
    Participation,
    Project,
    ProposeRequest,
    RankedCounterpart,
    RenewRequest,
    ScoreParts,
    utcnow,
)
from matchmaking.ranking import Engine, Hit

log = get_logger(__name__)

INDEX_DOCUMENTS = Gauge("distretto_matchmaking_index_documents", "Documents in the ranking index", ["kind"])
QUERY_SECONDS = Histogram(
    "distretto_matchmaking_query_duration_seconds",
    "Ranking query latency (index work only)",
    ["target"],
    buckets=(0.001, 0.0025, 0.005, 0.01, 0.02, 0.05, 0.1, 0.25, 0.5, 1, 2.5),
)
MATCHES = Gauge("distretto_matchmaking_matches", "Matches by state", ["state"])
MATCHES_PROPOSED = Counter("distretto_matchmaking_matches_proposed_total", "Matches proposed")

PROFILE = "profile"
OPPORTUNITY = "opportunity"
PUBLIC_STATUSES = ("active", "suspended", "lapsed", "left")
"""Organisations that are or were members: their profiles are public to members (applications are not)."""


Ctx = Context[Settings]
"""What every use case receives: the caller, the database, the settings, and the ranking
``Engine`` and ``Encoder`` singletons (``ctx.get(Engine)``), provided at start-up."""


def after_commit(session: AsyncSession, fn: Callable[[], None]) -> None:
    """Run ``fn`` once the session's transaction committed (never on rollback)."""
    pending: list[Callable[[], None]] = session.info.setdefault("matchmaking_after_commit", [])
    if not pending:

        def run(_session: Any) -> None:
            for callback in session.info.pop("matchmaking_after_commit", []):
                callback()

        event.listen(session.sync_session, "after_commit", run, once=True)
    pending.append(fn)


def today() -> date:
    """Today in UTC."""
    return datetime.now(UTC).date()


# -- documents -----------------------------------------------------------------------------


def opportunity_fields(o: Opportunity) -> dict[str, str]:
    """The texts of an opportunity the index searches, by field."""
    return {
        "title": o.title,
        "summary": o.summary,
        "keywords": "; ".join(o.keywords),
        "technology": "; ".join(o.technology_fields),
        "market": "; ".join(o.market_fields),
        "topic": o.topic_code or "",
    }


def opportunity_text(o: Opportunity) -> str:
    """The text embedded for an opportunity (most telling parts first: the model reads 256 tokens)."""
    parts = [o.title + ".", "Keywords: " + ", ".join(o.keywords) + "." if o.keywords else "", o.summary]
    if o.technology_fields:
        parts.append("Technology: " + ", ".join(o.technology_fields) + ".")
    if o.market_fields:
        parts.append("Market: " + ", ".join(o.market_fields) + ".")
    return " ".join(p for p in parts if p)


def opportunity_document(o: Opportunity, vector: Any) -> Document:
    """An opportunity as an index document."""
    return Document(
        key=f"{OPPORTUNITY}:{o.id}",
        kind=OPPORTUNITY,
        entity_id=o.id,
        fields=opportunity_fields(o),
        vector=vector,
        opportunity_type=o.opportunity_type,
        sectors=tuple(o.sectors),
        country=o.country,
        owner_id=o.owner_organisation_id,
        expires_on=o.expires_on,
        active=o.status == OpportunityStatus.ACTIVE,
    )


def project_text(projects: list[Project]) -> str:
    """Titles, objectives, topics and keywords of an organisation's projects."""
    chunks = []
    for p in projects:
        chunk = f"{p.acronym}: {p.title}. {p.objective}"
        if p.topics:
            chunk += " Topics: " + ", ".join(p.topics) + "."
        if p.keywords:
            chunk += " Keywords: " + ", ".join(p.keywords) + "."
        chunks.append(chunk.strip())
    return "\n".join(chunks)


def profile_fields(org: Organisation, projects: list[Project]) -> dict[str, str]:
    """The texts of a competence profile the index searches, by field."""
    return {
        "description": org.description,
        "competences": "; ".join(org.competences),
        "keywords": "; ".join(org.keywords),
        "projects": project_text(projects),
    }


def profile_text(org: Organisation, projects: list[Project]) -> str:
    """The text embedded for a competence profile."""
    parts = []
    if org.competences:
        parts.append("Competences: " + ", ".join(org.competences) + ".")
    if org.keywords:
        parts.append("Keywords: " + ", ".join(org.keywords) + ".")
    parts.append(org.description)
    parts += [f"{p.title}." for p in projects]
    parts += [", ".join(p.keywords) for p in projects if p.keywords]
    return " ".join(p for p in parts if p)


def profile_document(org: Organisation, projects: list[Project], vector: Any) -> Document:
    """A competence profile as an index document."""
    return Document(
        key=f"{PROFILE}:{org.organisation_id}",
        kind=PROFILE,
        entity_id=org.organisation_id,
        fields=profile_fields(org, projects),
        vector=vector,
        org_kind=org.kind,
        sectors=tuple(org.sectors),
        country=org.country,
        owner_id=org.organisation_id,
        active=org.status == "active",
    )


async def _embed(ctx: Ctx, text: str) -> Any:
    return await asyncio.to_thread(ctx.get(Encoder).encode_one, text)


def _update_gauges(ctx: Ctx) -> None:
    INDEX_DOCUMENTS.labels(OPPORTUNITY).set(ctx.get(Engine).index.count(OPPORTUNITY))
    INDEX_DOCUMENTS.labels(PROFILE).set(ctx.get(Engine).index.count(PROFILE))


def _index_later(session: AsyncSession, ctx: Ctx, doc: Document | None, remove_key: str | None = None) -> None:
    def apply() -> None:
        if doc is not None:
            ctx.get(Engine).upsert(doc)
        elif remove_key is not None:
            ctx.get(Engine).remove(remove_key)
        _update_gauges(ctx)

    after_commit(session, apply)


# -- start-up ---------------------------------------------------------------------------------


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
            engine.feedback.add(_query_key(match), _counterpart_key(match), 1 if fb.useful else -1)
    engine.index.merge()
    _update_gauges(ctx)
    await refresh_match_gauge(ctx)
    log.info("index rebuilt", opportunities=len(opportunities), profiles=len(orgs), embedded=len(stale))
    return len(opportunities) + len(orgs)


async def merge_delta(ctx: Ctx) -> None:
    """Fold the BM25 delta into the main index, refit the dense projection when due (in a worker thread)."""
    index = ctx.get(Engine).index
    if not index.dirty:
        return
    built = await asyncio.to_thread(index.build, index.snapshot())
    index.install(built)


async def refresh_match_gauge(ctx: Ctx) -> None:
    """Set the matches-by-state gauge from the database."""
    async with ctx.db.read() as session:
        rows = (await session.execute(select(Match.state, func.count()).group_by(Match.state))).all()
    counts = {state: n for state, n in rows}
    for state in MatchState:
        MATCHES.labels(state.value).set(counts.get(state.value, 0))


# -- opportunities ------------------------------------------------------------------------------


def _public(o: Opportunity) -> OpportunityPublic:
    return OpportunityPublic.model_validate(o, from_attributes=True)


async def _get_opportunity(session: AsyncSession, opportunity_id: str) -> Opportunity:
    o = await session.get(Opportunity, opportunity_id)
    if o is None:
        raise NotFound(f"opportunity {opportunity_id} not found")
    return o


# -- who may see what (docs/service-guide.md, "Authorisation") ------------------------------------
#
# An opportunity's owner view, its ranking and its matches belong to the owning organisation
# and staff. Others see a published opportunity only anonymised (/public/...): the owner view
# of a published one answers 403 (it is public, this view is not), of any other one 404.
# A match belongs to its two sides: anyone else gets 404, meeting place included.


def _published(o: Opportunity) -> bool:
    return o.status == OpportunityStatus.ACTIVE and o.expires_on >= today()


async def _opportunity_for(ctx: Ctx, session: AsyncSession, opportunity_id: str, what: str) -> Opportunity:
    """The opportunity, for its owner and staff (403 when published, 404 otherwise)."""
    o = await session.get(Opportunity, opportunity_id)
    if o is not None and ctx.acts_for(o.owner_organisation_id):
        return o
    if o is not None and _published(o) and not ctx.principal.is_anonymous:
        ctx.require_private_of(o.owner_organisation_id, what)
    raise NotFound(f"opportunity {opportunity_id} not found")


def _own_filter(ctx: Ctx, q: Any, owner_column: Any) -> Any:
    """A list query narrowed to the caller's organisation (staff: unchanged; partners: 403)."""
    if ctx.sees_everything:
        return q
    ctx.require_member_or_staff("list these records")
    return q.where(owner_column == ctx.own_organisation())


async def _org_names(session: AsyncSession) -> list[str]:
    return list((await session.execute(select(Organisation.name))).scalars())


def _published_event(o: Opportunity, names: list[str]) -> contracts.OpportunityPublished:
    return contracts.OpportunityPublished(
        opportunity_id=o.id,
        opportunity_type=o.opportunity_type,
        title=anonymise_text(o.title, names),
        summary=anonymise_text(o.summary, names),
        keywords=anonymise_list(o.keywords, names),
        sectors=o.sectors,
        country=o.country,
        expires_on=o.expires_on,
        owner_organisation_id=o.owner_organisation_id,
        topic_code=o.topic_code,
    )


async def create_opportunity(ctx: Ctx, data: OpportunityCreate) -> OpportunityPublic:
    """Publish a new opportunity: stored, indexed, announced (anonymised)."""
    ctx.require_private_of(data.owner_organisation_id, "publish opportunities for this organisation")
    now = today()
    expires_on = data.expires_on or domain.add_months(now, ctx.settings.default_validity_months)
    if expires_on <= now:
        raise Invalid("expires_on must be in the future", details={"expires_on": expires_on.isoformat()})
    if data.deadline is not None and data.deadline < now:
        raise Invalid("the call deadline has already passed", details={"deadline": data.deadline.isoformat()})
    o = Opportunity(**data.model_dump(exclude={"expires_on"}), expires_on=expires_on)
    o.opportunity_type = OpportunityType(data.opportunity_type).value
    text = opportunity_text(o)
    vector = await _embed(ctx, text)
    o.embedding, o.embedded_hash = to_bytes(vector), text_hash(text)
    try:
        async with ctx.db.transaction() as session:
            if data.reference:
                existing = await session.execute(select(Opportunity.id).where(Opportunity.reference == data.reference))
                if existing.first():
                    raise Conflict(f"an opportunity with reference {data.reference} exists already")
            session.add(o)
            add_event(session, _published_event(o, await _org_names(session)), source=ctx.source)
            _index_later(session, ctx, opportunity_document(o, vector))
    except IntegrityError as exc:
        raise Conflict(f"an opportunity with reference {data.reference} exists already") from exc
    return _public(o)


async def update_opportunity(ctx: Ctx, opportunity_id: str, data: OpportunityUpdate) -> OpportunityPublic:
    """Change an opportunity; it is re-embedded and re-indexed when its text changed."""
    changes = data.model_dump(exclude_unset=True)
    if not changes:
        raise Invalid("nothing to change")
    async with ctx.db.read() as session:
        current = await _opportunity_for(ctx, session, opportunity_id, "change this opportunity")
    is_search = current.opportunity_type == OpportunityType.PARTNER_SEARCH
    for name in ("topic_code", "role_sought", "deadline"):
        if not is_search and changes.get(name) is not None:
            raise Invalid(f"{name} belongs to partner searches only")
        if is_search and name in ("topic_code", "role_sought") and name in changes and changes[name] is None:
            raise Invalid(f"a partner search needs its {name}")
    for name, value in changes.items():
        setattr(current, name, value.value if hasattr(value, "value") else value)
    text = opportunity_text(current)
    vector = from_bytes(current.embedding)
    if current.embedded_hash != text_hash(text) or vector is None:
        vector = await _embed(ctx, text)
    async with ctx.db.transaction() as session:
        o = await _get_opportunity(session, opportunity_id)
        for name in changes:
            setattr(o, name, getattr(current, name))
        o.embedding, o.embedded_hash = to_bytes(vector), text_hash(text)
        o.updated_at = utcnow()
        session.add(o)
        _index_later(session, ctx, opportunity_document(o, vector))
    return _public(o)


async def renew_opportunity(ctx: Ctx, opportunity_id: str, req: RenewRequest) -> OpportunityPublic:
    """Extend an opportunity's validity (an expired one is published again)."""
    now = today()
    async with ctx.db.transaction() as session:
        o = await _opportunity_for(ctx, session, opportunity_id, "renew this opportunity")
        if o.status == OpportunityStatus.WITHDRAWN:
            raise Conflict("a withdrawn opportunity is not renewed: publish a new one")
        new_expiry = req.expires_on or domain.add_months(now, req.months or 12)
        if new_expiry <= now:
            raise Invalid("the new expiry must be in the future")
        if new_expiry <= o.expires_on:
            raise Invalid(f"the new expiry must be after the current one ({o.expires_on.isoformat()})")
        o.expires_on = new_expiry
        o.status = OpportunityStatus.ACTIVE.value
        o.renewals += 1
        o.updated_at = utcnow()
        session.add(o)
        add_event(session, contracts.OpportunityRenewed(opportunity_id=o.id, expires_on=new_expiry), source=ctx.source)
        key = f"{OPPORTUNITY}:{o.id}"

        def reactivate() -> None:
            ctx.get(Engine).index.set_active(key, True, new_expiry)

        after_commit(session, reactivate)
    return _public(o)


async def withdraw_opportunity(ctx: Ctx, opportunity_id: str) -> OpportunityPublic:
    """The owner (or staff) takes an opportunity off the market before it expires."""
    async with ctx.db.transaction() as session:
        o = await _opportunity_for(ctx, session, opportunity_id, "withdraw this opportunity")
        if o.status != OpportunityStatus.ACTIVE:
            raise Conflict(f"the opportunity is {o.status}, not active")
        o.status = OpportunityStatus.WITHDRAWN.value
        o.updated_at = utcnow()
        session.add(o)
        add_event(session, contracts.OpportunityWithdrawn(opportunity_id=o.id), source=ctx.source)
        key = f"{OPPORTUNITY}:{o.id}"

        def deactivate() -> None:
            ctx.get(Engine).index.set_active(key, False)

        after_commit(session, deactivate)
    return _public(o)


async def expire_due(ctx: Ctx, on: date | None = None) -> list[str]:
    """Mark every active opportunity past its expiry as expired (the periodic job)."""
    on = on or today()
    async with ctx.db.transaction() as session:
        due = list(
            (
                await session.execute(
                    select(Opportunity).where(
                        Opportunity.status == OpportunityStatus.ACTIVE.value, Opportunity.expires_on < on
                    )
                )
            ).scalars()
        )
        for o in due:
            o.status = OpportunityStatus.EXPIRED.value
            o.updated_at = utcnow()
            session.add(o)
            add_event(session, contracts.OpportunityExpired(opportunity_id=o.id), source=ctx.source)
        keys = [f"{OPPORTUNITY}:{o.id}" for o in due]

        def deactivate() -> None:
            for key in keys:
                ctx.get(Engine).index.set_active(key, False)

        after_commit(session, deactivate)
    return [o.id for o in due]


async def get_opportunity(ctx: Ctx, opportunity_id: str) -> OpportunityPublic:
    """One opportunity, as its owner sees it."""
    async with ctx.db.read() as session:
        return _public(await _opportunity_for(ctx, session, opportunity_id, "see this opportunity's owner view"))


def _opportunity_query(
    *, opportunity_type: str | None, status: str | None, owner: str | None, sector: str | None, reference: str | None
) -> Any:
    q = select(Opportunity)
    if opportunity_type:
        q = q.where(Opportunity.opportunity_type == opportunity_type)
    if status:
        q = q.where(Opportunity.status == status)
    if owner:
        q = q.where(Opportunity.owner_organisation_id == owner)
    if reference:
        q = q.where(Opportunity.reference == reference)
    return q


async def list_opportunities(
    ctx: Ctx,
    page: PageParams,
    *,
    opportunity_type: str | None = None,
    status: str | None = None,
    owner: str | None = None,
    sector: str | None = None,
    reference: str | None = None,
) -> Page[OpportunityPublic]:
    """Opportunities, newest first, filtered; a member sees its own organisation's."""
    q = _opportunity_query(
        opportunity_type=opportunity_type, status=status, owner=owner, sector=sector, reference=reference
    )
    q = _own_filter(ctx, q, Opportunity.owner_organisation_id)
    async with ctx.db.read() as session:
        rows = list((await session.execute(q.order_by(col(Opportunity.created_at).desc(), Opportunity.id))).scalars())
    if sector:
        rows = [o for o in rows if sector in o.sectors]
    return make_page([_public(o) for o in rows[page.offset : page.offset + page.limit]], len(rows), page)


def anonymous_view(o: Opportunity, names: list[str]) -> OpportunityAnonymous:
    """The public, anonymised view of an opportunity."""
    return OpportunityAnonymous(
        id=o.id,
        opportunity_type=o.opportunity_type,
        title=anonymise_text(o.title, names),
        summary=anonymise_text(o.summary, names),
        keywords=anonymise_list(o.keywords, names),
        technology_fields=anonymise_list(o.technology_fields, names),
        market_fields=anonymise_list(o.market_fields, names),
        sectors=o.sectors,
        development_stage=o.development_stage,
        country=o.country,
        topic_code=o.topic_code,
        role_sought=o.role_sought,
        deadline=o.deadline,
        expires_on=o.expires_on,
    )


async def list_public(
    ctx: Ctx, page: PageParams, *, opportunity_type: str | None = None, sector: str | None = None
) -> Page[OpportunityAnonymous]:
    """Published (active, not expired) opportunities, anonymised."""
    q = _opportunity_query(
        opportunity_type=opportunity_type,
        status=OpportunityStatus.ACTIVE.value,
        owner=None,
        sector=None,
        reference=None,
    ).where(Opportunity.expires_on >= today())
    async with ctx.db.read() as session:
        rows = list((await session.execute(q.order_by(col(Opportunity.created_at).desc(), Opportunity.id))).scalars())
        names = await _org_names(session)
    if sector:
        rows = [o for o in rows if sector in o.sectors]
    items = [anonymous_view(o, names) for o in rows[page.offset : page.offset + page.limit]]
    return make_page(items, len(rows), page)


async def get_public(ctx: Ctx, opportunity_id: str) -> OpportunityAnonymous:
    """One published opportunity, anonymised (an expired one is not public)."""
    async with ctx.db.read() as session:
        o = await _get_opportunity(session, opportunity_id)
        if o.status != OpportunityStatus.ACTIVE or o.expires_on < today():
            raise NotFound(f"opportunity {opportunity_id} is not published")
        return anonymous_view(o, await _org_names(session))


# -- ranking -------------------------------------------------------------------------------------


@dataclass(frozen=True)
class RankFilters:
    """Filters a user may add to a ranking."""

    sector: str | None = None
    kind: str | None = None
    country: str | None = None
    include_expired: bool = False


def _query_key(match: Match) -> str:
    return f"{OPPORTUNITY}:{match.opportunity_id}"


def _counterpart_key(match: Match) -> str:
    return f"{match.counterpart_type}:{match.counterpart_id}"


def _filters_for_opportunity(o: Opportunity, target: str, f: RankFilters) -> list[Filter]:
    kind = OpportunityType(o.opportunity_type)
    sectors = frozenset({f.sector}) if f.sector else None
    valid_on = None if f.include_expired else today()
    out = []
    opp_types = domain.counterpart_types(kind)
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
        kinds = domain.profile_kinds(kind)
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
                names = names if names is not None else await _org_names(session)
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


def _merge_rankings(ctx: Ctx, query: Document, filters: list[Filter], limit: int, offset: int) -> tuple[list[Hit], int]:
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
        o = await _opportunity_for(ctx, session, opportunity_id, "rank counterparts of this opportunity")
        query = ctx.get(Engine).index.get(f"{OPPORTUNITY}:{o.id}")
        if query is None:
            raise Conflict("the opportunity is not indexed yet; retry in a moment")
        started = time.perf_counter()
        hits, total = _merge_rankings(ctx, query, _filters_for_opportunity(o, target, f), page.limit, page.offset)
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
        types = domain.opportunity_types_for_organisation(org.kind)
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


# -- organisations and projects (from events) ------------------------------------------------------


async def _projects_of(session: AsyncSession, organisation_id: str) -> list[Project]:
    q = (
        select(Project)
        .join(Participation, col(Participation.project_id) == col(Project.project_id))
        .where(Participation.organisation_id == organisation_id)
        .order_by(Project.project_id)
    )
    return list((await session.execute(q)).scalars())


async def reindex_profile(session: AsyncSession, ctx: Ctx, organisation_id: str) -> None:
    """Recompute an organisation's profile text and vector; index it (or drop it when not active)."""
    org = await session.get(Organisation, organisation_id)
    key = f"{PROFILE}:{organisation_id}"
    if org is None:
        return
    if org.status != "active":
        _index_later(session, ctx, None, remove_key=key)
        return
    projects = await _projects_of(session, organisation_id)
    text = profile_text(org, projects)
    vector = from_bytes(org.embedding)
    if org.embedded_hash != text_hash(text) or vector is None:
        vector = await _embed(ctx, text)
        org.embedding, org.embedded_hash = to_bytes(vector), text_hash(text)
        session.add(org)
    _index_later(session, ctx, profile_document(org, projects, vector))


async def apply_organisation(
    ctx: Ctx, session: AsyncSession, profile: OrganisationProfile, *, status: str | None = None
) -> None:
    """An organisation registered, changed or joined: keep its data, refresh its profile."""
    org = await session.get(Organisation, profile.organisation_id)
    if org is None:
        org = Organisation(organisation_id=profile.organisation_id, name=profile.name, kind=profile.kind, status="")
    org.name = profile.name
    org.kind = profile.kind
    org.status = status or profile.status
    org.sectors = list(profile.sectors)
    org.country = (profile.country or "IT").upper()[:2]
    org.description = profile.description
    org.competences = list(profile.competences)
    org.keywords = list(profile.keywords)
    org.updated_at = utcnow()
    session.add(org)
    await session.flush()
    await reindex_profile(session, ctx, org.organisation_id)


async def set_organisation_status(ctx: Ctx, session: AsyncSession, organisation_id: str, status: str) -> None:
    """An organisation was suspended, lapsed, rejected or left: its profile leaves the index."""
    org = await session.get(Organisation, organisation_id)
    if org is None:
        return
    org.status = status
    org.updated_at = utcnow()
    session.add(org)
    await session.flush()
    await reindex_profile(session, ctx, organisation_id)


async def apply_project(ctx: Ctx, session: AsyncSession, summary: ProjectSummary) -> None:
    """A project was registered or changed: keep it, refresh the profiles of its member organisations."""
    project = await session.get(Project, summary.project_id)
    before = set(project.member_organisation_ids) if project else set()
    if project is None:
        project = Project(project_id=summary.project_id)
    project.acronym = summary.acronym
    project.title = summary.title
    project.objective = summary.objective
    project.topics = list(summary.topics)
    project.keywords = list(summary.keywords)
    project.member_organisation_ids = list(summary.member_organisation_ids)
    project.updated_at = utcnow()
    session.add(project)
    after = set(summary.member_organisation_ids)
    gone = before - after
    if gone:
        await session.execute(
            delete(Participation).where(
                col(Participation.project_id) == summary.project_id,
                col(Participation.organisation_id).in_(gone),
            )
        )
    for org_id in sorted(after):
        if await session.get(Participation, (summary.project_id, org_id)) is None:
            session.add(Participation(project_id=summary.project_id, organisation_id=org_id))
    await session.flush()
    linked = (
        await session.execute(
            select(Participation.organisation_id).where(Participation.project_id == summary.project_id)
        )
    ).scalars()
    for org_id in sorted(set(linked) | gone):
        await reindex_profile(session, ctx, org_id)


async def add_participation(ctx: Ctx, session: AsyncSession, project_id: str, organisation_id: str) -> None:
    """A member organisation takes part in a project: its profile gains the project's text."""
    if await session.get(Participation, (project_id, organisation_id)) is None:
        session.add(Participation(project_id=project_id, organisation_id=organisation_id))
        await session.flush()
    await reindex_profile(session, ctx, organisation_id)


async def get_organisation(ctx: Ctx, organisation_id: str) -> OrganisationPublic:
    """An organisation's competence profile as matchmaking holds it."""
    ctx.require_member_or_staff("see competence profiles")
    async with ctx.db.read() as session:
        org = await session.get(Organisation, organisation_id)
        if org is None or not (ctx.acts_for(organisation_id) or org.status in PUBLIC_STATUSES):
            raise NotFound(f"organisation {organisation_id} not known to matchmaking")
        projects = await _projects_of(session, organisation_id)
    return _org_public(ctx, org, projects)


def _org_public(ctx: Ctx, org: Organisation, projects: list[Project]) -> OrganisationPublic:
    return OrganisationPublic(
        organisation_id=org.organisation_id,
        name=org.name,
        kind=org.kind,
        status=org.status,
        sectors=org.sectors,
        country=org.country,
        description=org.description,
        competences=org.competences,
        keywords=org.keywords,
        projects=[f"{p.acronym}: {p.title}" for p in projects],
        indexed=ctx.get(Engine).index.get(f"{PROFILE}:{org.organisation_id}") is not None,
    )


async def list_organisations(ctx: Ctx, page: PageParams, *, status: str | None = None) -> Page[OrganisationPublic]:
    """Known organisations, by name (others' applications left out)."""
    ctx.require_member_or_staff("see competence profiles")
    q = select(Organisation)
    count = select(func.count()).select_from(Organisation)
    if not ctx.sees_everything:
        public = or_(
            col(Organisation.status).in_(sorted(PUBLIC_STATUSES)),
            col(Organisation.organisation_id) == ctx.own_organisation(),
        )
        q, count = q.where(public), count.where(public)
    if status:
        q = q.where(Organisation.status == status)
        count = count.where(Organisation.status == status)
    async with ctx.db.read() as session:
        total = (await session.execute(count)).scalar_one()
        rows = list(
            (
                await session.execute(
                    q.order_by(Organisation.name, Organisation.organisation_id).offset(page.offset).limit(page.limit)
                )
            ).scalars()
        )
        items = [_org_public(ctx, org, await _projects_of(session, org.organisation_id)) for org in rows]
    return make_page(items, total, page)


# -- matches -------------------------------------------------------------------------------------------


async def _match_public(session: AsyncSession, m: Match) -> MatchPublic:
    votes = (await session.execute(select(MatchFeedback).where(MatchFeedback.match_id == m.id))).scalars()
    data = m.model_dump()
    data["feedback"] = {v.side: v.useful for v in votes}
    return MatchPublic.model_validate(data)


async def _sides(session: AsyncSession, m: Match) -> dict[Side, str | None]:
    """The organisation on each side of a match."""
    owner = await session.get(Opportunity, m.opportunity_id)
    if m.counterpart_type == OPPORTUNITY:
        other = await session.get(Opportunity, m.counterpart_id)
        counterpart = other.owner_organisation_id if other else None
    else:
        counterpart = m.counterpart_id
    return {Side.OPPORTUNITY: owner.owner_organisation_id if owner else None, Side.COUNTERPART: counterpart}


async def _match_for(ctx: Ctx, session: AsyncSession, match_id: str, side: Side | None = None) -> Match:
    """The match, for its two sides and staff (404 for everyone else); with ``side``, the caller
    must also act for that side (403: a side answers only for itself)."""
    m = await session.get(Match, match_id)
    if m is None:
        raise NotFound(f"match {match_id} not found")
    if ctx.sees_everything:
        return m
    sides = await _sides(session, m)
    ctx.hide_unless_party(*sides.values(), what=f"match {match_id}")
    if side is not None:
        ctx.require_private_of(sides[side], f"answer for the {side.value} side of this match")
    return m


def _matches_of(organisation_id: str | None) -> Any:
    """SQL: the matches where ``organisation_id`` is one of the two sides."""
    owned = select(Opportunity.id).where(Opportunity.owner_organisation_id == organisation_id)
    return or_(
        col(Match.opportunity_id).in_(owned),
        and_(col(Match.counterpart_type) == PROFILE, col(Match.counterpart_id) == organisation_id),
        and_(col(Match.counterpart_type) == OPPORTUNITY, col(Match.counterpart_id).in_(owned)),
    )


def _score_pair(ctx: Ctx, o: Opportunity, counterpart_type: str, counterpart_id: str) -> Hit:
    query = ctx.get(Engine).index.get(f"{OPPORTUNITY}:{o.id}")
    if query is None:
        raise Conflict("the opportunity is not indexed yet; retry in a moment")
    key = f"{counterpart_type}:{counterpart_id}"
    target = "opportunities" if counterpart_type == OPPORTUNITY else "profiles"
    for flt in _filters_for_opportunity(o, target, RankFilters()):
        ranking = ctx.get(Engine).rank(query, flt, focus_key=key)
        if ranking.hits:
            return ranking.hits[0]
    raise Invalid(
        f"{counterpart_type} {counterpart_id} is not a possible counterpart of this opportunity "
        "(wrong type pairing, expired, not an active member, or the same organisation)"
    )


def _new_match(o: Opportunity, hit: Hit) -> Match:
    return Match(
        opportunity_id=o.id,
        counterpart_type=hit.kind,
        counterpart_id=hit.entity_id,
        score=hit.score,
        score_parts={
            "bm25": hit.bm25,
            "bm25_normalised": hit.bm25_normalised,
            "dense": hit.dense,
            "fused": hit.fused,
            "feedback": hit.feedback,
        },
        explanation=hit.explanation,
    )


def _proposed_event(m: Match) -> contracts.MatchProposed:
    return contracts.MatchProposed(
        match_id=m.id,
        opportunity_id=m.opportunity_id,
        counterpart_type=m.counterpart_type,
        counterpart_id=m.counterpart_id,
        score=m.score,
    )


async def propose_match(ctx: Ctx, data: MatchCreate) -> MatchPublic:
    """Propose one match (scored and explained by the engine)."""
    async with ctx.db.transaction() as session:
        o = await _opportunity_for(ctx, session, data.opportunity_id, "propose matches for this opportunity")
        if o.status != OpportunityStatus.ACTIVE or domain.is_expired(o.expires_on, today()):
            raise Conflict("the opportunity has expired; renew it first")
        hit = _score_pair(ctx, o, data.counterpart_type, data.counterpart_id)
        existing = await session.execute(
            select(Match.id).where(
                Match.opportunity_id == o.id,
                Match.counterpart_type == data.counterpart_type,
                Match.counterpart_id == data.counterpart_id,
            )
        )
        if existing.first():
            raise Conflict("this match has been proposed already")
        m = _new_match(o, hit)
        session.add(m)
        add_event(session, _proposed_event(m), source=ctx.source)
        MATCHES_PROPOSED.inc()
        result = await _match_public(session, m)
    await refresh_match_gauge(ctx)
    return result


async def propose_for_opportunity(ctx: Ctx, opportunity_id: str, req: ProposeRequest) -> list[MatchPublic]:
    """A call for matches: the engine's best new counterparts become proposed matches (idempotent)."""
    async with ctx.db.transaction() as session:
        o = await _opportunity_for(ctx, session, opportunity_id, "call for matches for this opportunity")
        if o.status != OpportunityStatus.ACTIVE or domain.is_expired(o.expires_on, today()):
            raise Conflict("the opportunity has expired; renew it first")
        query = ctx.get(Engine).index.get(f"{OPPORTUNITY}:{o.id}")
        if query is None:
            raise Conflict("the opportunity is not indexed yet; retry in a moment")
        existing = {
            f"{t}:{c}"
            for t, c in (
                await session.execute(
                    select(Match.counterpart_type, Match.counterpart_id).where(Match.opportunity_id == o.id)
                )
            ).all()
        }
        hits, _ = _merge_rankings(
            ctx, query, _filters_for_opportunity(o, req.target, RankFilters()), req.limit + len(existing), 0
        )
        created: list[Match] = []
        for hit in hits:
            if len(created) >= req.limit or hit.score < req.min_score:
                break
            if hit.key in existing:
                continue
            m = _new_match(o, hit)
            session.add(m)
            add_event(session, _proposed_event(m), source=ctx.source)
            created.append(m)
        MATCHES_PROPOSED.inc(len(created))
        out = [await _match_public(session, m) for m in created]
    await refresh_match_gauge(ctx)
    return out


async def list_matches(
    ctx: Ctx,
    page: PageParams,
    *,
    state: str | None = None,
    opportunity_id: str | None = None,
    counterpart_id: str | None = None,
) -> Page[MatchPublic]:
    """Matches, best score first; a member sees those where its organisation is a side."""
    q = select(Match)
    count = select(func.count()).select_from(Match)
    if not ctx.sees_everything:
        ctx.require_member_or_staff("list matches")
        q, count = q.where(_matches_of(ctx.own_organisation())), count.where(_matches_of(ctx.own_organisation()))
    for cond in (
        Match.state == state if state else None,
        Match.opportunity_id == opportunity_id if opportunity_id else None,
        Match.counterpart_id == counterpart_id if counterpart_id else None,
    ):
        if cond is not None:
            q = q.where(cond)
            count = count.where(cond)
    async with ctx.db.read() as session:
        total = (await session.execute(count)).scalar_one()
        rows = (
            await session.execute(q.order_by(col(Match.score).desc(), Match.id).offset(page.offset).limit(page.limit))
        ).scalars()
        items = [await _match_public(session, m) for m in rows]
    return make_page(items, total, page)


async def get_match(ctx: Ctx, match_id: str) -> MatchPublic:
    """One match."""
    async with ctx.db.read() as session:
        return await _match_public(session, await _match_for(ctx, session, match_id))


def _status(m: Match) -> domain.MatchStatus:
    return domain.MatchStatus(MatchState(m.state), Decision(m.opportunity_side), Decision(m.counterpart_side))


def _apply(m: Match, status: domain.MatchStatus) -> None:
    m.state = status.state.value
    m.opportunity_side = status.opportunity_side.value
    m.counterpart_side = status.counterpart_side.value
    m.updated_at = utcnow()


async def decide_match(ctx: Ctx, match_id: str, side: Side, decision: Decision) -> MatchPublic:
    """One side accepts or declines a proposed match."""
    async with ctx.db.transaction() as session:
        m = await _match_for(ctx, session, match_id, side)
        try:
            status = domain.decide(_status(m), side, decision)
        except domain.IllegalTransition as exc:
            raise Conflict(str(exc)) from exc
        _apply(m, status)
        session.add(m)
        event_cls = contracts.MatchAccepted if decision is Decision.ACCEPTED else contracts.MatchDeclined
        add_event(session, event_cls(match_id=m.id, side=side.value), source=ctx.source)
        result = await _match_public(session, m)
    await refresh_match_gauge(ctx)
    return result


async def schedule_meeting(ctx: Ctx, match_id: str, req: MeetingRequest) -> MatchPublic:
    """Schedule the meeting of a match both sides accepted."""
    async with ctx.db.transaction() as session:
        m = await _match_for(ctx, session, match_id)
        try:
            status = domain.schedule_meeting(_status(m))
        except domain.IllegalTransition as exc:
            raise Conflict(str(exc)) from exc
        _apply(m, status)
        m.meeting_at = req.scheduled_at.astimezone(UTC)
        m.meeting_place = req.place
        session.add(m)
        add_event(session, contracts.MeetingScheduled(match_id=m.id, scheduled_at=m.meeting_at), source=ctx.source)
        result = await _match_public(session, m)
    await refresh_match_gauge(ctx)
    return result


async def meeting_held(ctx: Ctx, match_id: str, req: MeetingHeldRequest) -> MatchPublic:
    """Record that the meeting took place."""
    async with ctx.db.transaction() as session:
        m = await _match_for(ctx, session, match_id)
        try:
            status = domain.hold_meeting(_status(m))
        except domain.IllegalTransition as exc:
            raise Conflict(str(exc)) from exc
        held_on = req.held_on or today()
        if held_on > today():
            raise Invalid("held_on cannot be in the future")
        _apply(m, status)
        m.held_on = held_on
        session.add(m)
        add_event(session, contracts.MeetingHeld(match_id=m.id, held_on=held_on), source=ctx.source)
        result = await _match_public(session, m)
    await refresh_match_gauge(ctx)
    return result


async def give_feedback(ctx: Ctx, match_id: str, req: FeedbackRequest) -> MatchPublic:
    """A side says whether the match was useful; later rankings move accordingly."""
    async with ctx.db.transaction() as session:
        m = await _match_for(ctx, session, match_id, req.side)
        old = await session.get(MatchFeedback, (match_id, req.side.value))
        before = 0 if old is None else (1 if old.useful else -1)
        vote = 1 if req.useful else -1
        if old is None:
            session.add(MatchFeedback(match_id=match_id, side=req.side.value, useful=req.useful, comment=req.comment))
        else:
            old.useful, old.comment, old.created_at = req.useful, req.comment, utcnow()
            session.add(old)
        query_key, cand_key = _query_key(m), _counterpart_key(m)
        after_commit(session, lambda: ctx.get(Engine).feedback.add(query_key, cand_key, vote - before))
        await session.flush()
        result = await _match_public(session, m)
    return result
