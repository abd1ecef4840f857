"""Queries of matches: one match for its sides, the matches of an organisation, a match as answered."""

from __future__ import annotations

from typing import Any

from sqlalchemy import and_, or_
from sqlalchemy.ext.asyncio import AsyncSession
from sqlmodel import col, select

from distretto_shared.db import load
from distretto_shared.web import NotFound
from matchmaking.common import Ctx
from matchmaking.matches.domain import Side
from matchmaking.matches.models import (
    Match,
    MatchFeedback,
    MatchPublic,
)
from matchmaking.opportunities.models import (
    Opportunity,
)
from matchmaking.search.indexing import (
    OPPORTUNITY,
    PROFILE,
)


async def match_public(session: AsyncSession, m: Match) -> MatchPublic:
    votes = (await session.execute(select(MatchFeedback).where(MatchFeedback.match_id == m.id))).scalars()
    data = m.model_dump()
    data["feedback"] = {v.side: v.useful for v in votes}
    return MatchPublic.model_validate(data)


async def sides_of(session: AsyncSession, m: Match) -> dict[Side, str | None]:
    """The organisation on each side of a match."""
    owner = await session.get(Opportunity, m.opportunity_id)
    if m.counterpart_type == OPPORTUNITY:
        other = await session.get(Opportunity, m.counterpart_id)
        counterpart = other.owner_organisation_id if other else None
    else:
        counterpart = m.counterpart_id
    return {Side.OPPORTUNITY: owner.owner_organisation_id if owner else None, Side.COUNTERPART: counterpart}


async def match_for(ctx: Ctx, session: AsyncSession, match_id: str, side: Side | None = None) -> Match:
    """The match, for its two sides and staff (404 for everyone else); with ``side``, the caller
    must also act for that side (403: a side answers only for itself)."""
    m = await load(session, Match, match_id)
    if m is None:
        raise NotFound(f"match {match_id} not found")
    if ctx.sees_everything:
        return m
    sides = await sides_of(session, m)
    ctx.hide_unless_party(*sides.values(), what=f"match {match_id}")
    if side is not None:
        ctx.require_private_of(sides[side], f"answer for the {side.value} side of this match")
    return m


def matches_of(organisation_id: str | None) -> Any:
    """SQL: the matches where ``organisation_id`` is one of the two sides."""
    owned = select(Opportunity.id).where(Opportunity.owner_organisation_id == organisation_id)
    return or_(
        col(Match.opportunity_id).in_(owned),
        and_(col(Match.counterpart_type) == PROFILE, col(Match.counterpart_id) == organisation_id),
        and_(col(Match.counterpart_type) == OPPORTUNITY, col(Match.counterpart_id).in_(owned)),
    )
