"""Use cases of matches: propose, answer, meet, give feedback; one unit of work each."""

from __future__ import annotations

from datetime import UTC

from prometheus_client import Counter, Gauge
from sqlalchemy import func
from sqlmodel import col, select

from distretto_shared.contracts import matchmaking as contracts
from distretto_shared.conventions import canonical_id, hex_id, paginate
from distretto_shared.outbox import add_event
from distretto_shared.web import Conflict, Invalid, Page, PageParams, make_page
from matchmaking.common import Ctx, after_commit, today
from matchmaking.matches import domain
from matchmaking.matches.domain import Decision, MatchState, Side
from matchmaking.matches.models import (
    FeedbackRequest,
    Match,
    MatchCreate,
    MatchFeedback,
    MatchPublic,
    MeetingHeldRequest,
    MeetingRequest,
    ProposeRequest,
)
from matchmaking.matches.repository import match_for, match_public, matches_of
from matchmaking.opportunities.domain import OpportunityStatus, is_expired
from matchmaking.opportunities.models import (
    Opportunity,
)
from matchmaking.opportunities.repository import opportunity_for
from matchmaking.search.engine import Engine, Hit
from matchmaking.search.indexing import (
    OPPORTUNITY,
    counterpart_key,
    feedback_changed,
    query_key,
)
from matchmaking.search.service import RankFilters, filters_for_opportunity, merge_rankings, score_pair
from matchmaking.tables import utcnow

MATCHES = Gauge("distretto_matchmaking_matches", "Matches by state", ["state"])
MATCHES_PROPOSED = Counter("distretto_matchmaking_matches_proposed_total", "Matches proposed")


async def refresh_match_gauge(ctx: Ctx) -> None:
    """Set the matches-by-state gauge from the database."""
    async with ctx.db.read() as session:
        rows = (await session.execute(select(Match.state, func.count()).group_by(Match.state))).all()
    counts = {state: n for state, n in rows}
    for state in MatchState:
        MATCHES.labels(state.value).set(counts.get(state.value, 0))


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
        o = await opportunity_for(ctx, session, data.opportunity_id, "propose matches for this opportunity")
        if o.status != OpportunityStatus.ACTIVE or is_expired(o.expires_on, today()):
            raise Conflict("the opportunity has expired; renew it first")
        hit = score_pair(ctx, o, data.counterpart_type, data.counterpart_id)
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
        result = await match_public(session, m)
    await refresh_match_gauge(ctx)
    return result


async def propose_for_opportunity(ctx: Ctx, opportunity_id: str, req: ProposeRequest) -> list[MatchPublic]:
    """A call for matches: the engine's best new counterparts become proposed matches (idempotent)."""
    async with ctx.db.transaction() as session:
        o = await opportunity_for(ctx, session, opportunity_id, "call for matches for this opportunity")
        if o.status != OpportunityStatus.ACTIVE or is_expired(o.expires_on, today()):
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
        hits, _ = merge_rankings(
            ctx, query, filters_for_opportunity(o, req.target, RankFilters()), req.limit + len(existing), 0
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
        out = [await match_public(session, m) for m in created]
    await refresh_match_gauge(ctx)
    return out


def _either_form(counterpart_id: str) -> set[str]:
    """A counterpart id as stored: 32-hex for an opportunity, dashed for an organisation."""
    return {hex_id(counterpart_id), canonical_id(counterpart_id)}


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
    if not ctx.sees_everything:
        ctx.require_member_or_staff("list matches")
        q = q.where(matches_of(ctx.own_organisation()))
    if state:
        q = q.where(Match.state == state)
    if opportunity_id:
        q = q.where(Match.opportunity_id == opportunity_id)
    if counterpart_id:
        q = q.where(col(Match.counterpart_id).in_(_either_form(counterpart_id)))
    async with ctx.db.read() as session:
        rows: Page[Match] = await paginate(session, q, page, order_by=[col(Match.score).desc(), Match.id])
        items = [await match_public(session, m) for m in rows.items]
    return make_page(items, rows.total, page)


async def get_match(ctx: Ctx, match_id: str) -> MatchPublic:
    """One match."""
    async with ctx.db.read() as session:
        return await match_public(session, await match_for(ctx, session, match_id))


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
        m = await match_for(ctx, session, match_id, side)
        try:
            status = domain.decide(_status(m), side, decision)
        except domain.IllegalTransition as exc:
            raise Conflict(str(exc)) from exc
        _apply(m, status)
        session.add(m)
        event_cls = contracts.MatchAccepted if decision is Decision.ACCEPTED else contracts.MatchDeclined
        add_event(session, event_cls(match_id=m.id, side=side.value), source=ctx.source)
        result = await match_public(session, m)
    await refresh_match_gauge(ctx)
    return result


async def schedule_meeting(ctx: Ctx, match_id: str, req: MeetingRequest) -> MatchPublic:
    """Schedule the meeting of a match both sides accepted."""
    async with ctx.db.transaction() as session:
        m = await match_for(ctx, session, match_id)
        try:
            status = domain.schedule_meeting(_status(m))
        except domain.IllegalTransition as exc:
            raise Conflict(str(exc)) from exc
        _apply(m, status)
        m.meeting_at = req.scheduled_at.astimezone(UTC)
        m.meeting_place = req.place
        session.add(m)
        add_event(session, contracts.MeetingScheduled(match_id=m.id, scheduled_at=m.meeting_at), source=ctx.source)
        result = await match_public(session, m)
    await refresh_match_gauge(ctx)
    return result


async def meeting_held(ctx: Ctx, match_id: str, req: MeetingHeldRequest) -> MatchPublic:
    """Record that the meeting took place."""
    async with ctx.db.transaction() as session:
        m = await match_for(ctx, session, match_id)
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
        result = await match_public(session, m)
    await refresh_match_gauge(ctx)
    return result


async def give_feedback(ctx: Ctx, match_id: str, req: FeedbackRequest) -> MatchPublic:
    """A side says whether the match was useful; later rankings move accordingly."""
    async with ctx.db.transaction() as session:
        m = await match_for(ctx, session, match_id, req.side)
        old = await session.get(MatchFeedback, (match_id, req.side.value))
        before = 0 if old is None else (1 if old.useful else -1)
        vote = 1 if req.useful else -1
        if old is None:
            session.add(MatchFeedback(match_id=match_id, side=req.side.value, useful=req.useful, comment=req.comment))
        else:
            old.useful, old.comment, old.created_at = req.useful, req.comment, utcnow()
            session.add(old)
        pair_key, cand_key = query_key(m), counterpart_key(m)
        lean = ctx.get(Engine).lean_of(m.score_parts or {})
        after_commit(session, lambda: ctx.get(Engine).feedback.add(pair_key, cand_key, vote - before, lean))
        await feedback_changed(ctx, session)
        await session.flush()
        result = await match_public(session, m)
    return result
