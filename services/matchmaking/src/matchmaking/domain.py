"""Pure rules of matchmaking: opportunity types and their pairing, the match lifecycle, feedback, fusion.

No I/O and no framework here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from datetime import date
from enum import StrEnum


class OpportunityType(StrEnum):
    """The Enterprise Europe Network profile types, plus the EU-call partner search."""

    TECHNOLOGY_OFFER = "technology_offer"
    TECHNOLOGY_REQUEST = "technology_request"
    RD_REQUEST = "rd_request"
    BUSINESS_OFFER = "business_offer"
    BUSINESS_REQUEST = "business_request"
    PARTNER_SEARCH = "partner_search"


class OpportunityStatus(StrEnum):
    """An opportunity is published until it expires (renewal publishes it again) or its owner withdraws it."""

    ACTIVE = "active"
    EXPIRED = "expired"
    WITHDRAWN = "withdrawn"


class DevelopmentStage(StrEnum):
    """How far the technology is (EEN's stages, simplified)."""

    CONCEPT = "concept"
    LAB_TESTED = "lab_tested"
    PROTOTYPE = "prototype"
    FIELD_TESTED = "field_tested"
    ON_THE_MARKET = "on_the_market"


class RoleSought(StrEnum):
    """The role a partner search looks for in the consortium."""

    COORDINATOR = "coordinator"
    PARTNER = "partner"


RESEARCH_KINDS = frozenset({"university", "research_institute", "hospital"})
"""Organisation kinds that answer an R&D request."""

ANY_KIND: frozenset[str] | None = None

# Which opportunities answer which: an offer meets the matching request ("which way does the money flow?").
COUNTERPART_TYPES: dict[OpportunityType, frozenset[OpportunityType]] = {
    OpportunityType.TECHNOLOGY_OFFER: frozenset({OpportunityType.TECHNOLOGY_REQUEST}),
    OpportunityType.TECHNOLOGY_REQUEST: frozenset({OpportunityType.TECHNOLOGY_OFFER}),
    OpportunityType.BUSINESS_OFFER: frozenset({OpportunityType.BUSINESS_REQUEST}),
    OpportunityType.BUSINESS_REQUEST: frozenset({OpportunityType.BUSINESS_OFFER}),
    OpportunityType.RD_REQUEST: frozenset(),
    OpportunityType.PARTNER_SEARCH: frozenset(),
}

# Which member organisations (competence profiles) answer an opportunity, by kind (None: every kind).
# A technology request is answered by whoever holds the technology, research or company; an R&D
# request only by research organisations; offers and business requests by companies.
PROFILE_KINDS: dict[OpportunityType, frozenset[str] | None] = {
    OpportunityType.TECHNOLOGY_OFFER: frozenset({"company"}),
    OpportunityType.TECHNOLOGY_REQUEST: ANY_KIND,
    OpportunityType.RD_REQUEST: RESEARCH_KINDS,
    OpportunityType.BUSINESS_OFFER: frozenset({"company"}),
    OpportunityType.BUSINESS_REQUEST: frozenset({"company"}),
    OpportunityType.PARTNER_SEARCH: ANY_KIND,
}


def counterpart_types(kind: OpportunityType) -> frozenset[OpportunityType]:
    """Opportunity types that can answer an opportunity of type ``kind``."""
    return COUNTERPART_TYPES[kind]


def profile_kinds(kind: OpportunityType) -> frozenset[str] | None:
    """Organisation kinds whose profiles can answer ``kind`` (None = any kind)."""
    return PROFILE_KINDS[kind]


def opportunity_types_for_organisation(org_kind: str) -> frozenset[OpportunityType]:
    """Opportunity types an organisation of ``org_kind`` can answer (the reverse of :data:`PROFILE_KINDS`)."""
    return frozenset(t for t, kinds in PROFILE_KINDS.items() if kinds is None or org_kind in kinds)


def is_expired(expires_on: date, today: date) -> bool:
    """An opportunity is valid up to and including its expiry day."""
    return expires_on < today


def add_months(day: date, months: int) -> date:
    """``day`` plus ``months`` calendar months (clamped to the month's last day)."""
    month0 = day.month - 1 + months
    year, month = day.year + month0 // 12, month0 % 12 + 1
    for d in (day.day, 30, 29, 28):
        try:
            return date(year, month, d)
        except ValueError:
            continue
    raise AssertionError("unreachable")


# -- the match lifecycle -----------------------------------------------------------


class MatchState(StrEnum):
    """proposed → accepted (both sides) or declined (either side) → meeting scheduled → meeting held."""

    PROPOSED = "proposed"
    ACCEPTED = "accepted"
    DECLINED = "declined"
    MEETING_SCHEDULED = "meeting_scheduled"
    MEETING_HELD = "meeting_held"


class Side(StrEnum):
    """The two parties of a match: the opportunity's owner and the counterpart."""

    OPPORTUNITY = "opportunity"
    COUNTERPART = "counterpart"


class Decision(StrEnum):
    """One side's answer to a proposed match."""

    PENDING = "pending"
    ACCEPTED = "accepted"
    DECLINED = "declined"


class IllegalTransition(Exception):
    """The match cannot make that step from its current state."""


@dataclass(frozen=True)
class MatchStatus:
    """The part of a match the lifecycle rules look at."""

    state: MatchState
    opportunity_side: Decision
    counterpart_side: Decision


def decide(status: MatchStatus, side: Side, decision: Decision) -> MatchStatus:
    """One side accepts or declines: declined by either side ends it; accepted by both makes it accepted."""
    if decision is Decision.PENDING:
        raise IllegalTransition("a decision is accepted or declined")
    if status.state is not MatchState.PROPOSED:
        raise IllegalTransition(f"the match is {status.state.value}; only a proposed match can be answered")
    current = status.opportunity_side if side is Side.OPPORTUNITY else status.counterpart_side
    if current is not Decision.PENDING:
        raise IllegalTransition(f"the {side.value} side already {current.value} this match")
    opp = decision if side is Side.OPPORTUNITY else status.opportunity_side
    cp = decision if side is Side.COUNTERPART else status.counterpart_side
    if Decision.DECLINED in (opp, cp):
        state = MatchState.DECLINED
    elif opp is Decision.ACCEPTED and cp is Decision.ACCEPTED:
        state = MatchState.ACCEPTED
    else:
        state = MatchState.PROPOSED
    return MatchStatus(state, opp, cp)


def schedule_meeting(status: MatchStatus) -> MatchStatus:
    """A meeting can be scheduled once both sides accepted (and not twice)."""
    if status.state is not MatchState.ACCEPTED:
        raise IllegalTransition(f"the match is {status.state.value}; a meeting needs a match accepted by both sides")
    return MatchStatus(MatchState.MEETING_SCHEDULED, status.opportunity_side, status.counterpart_side)


def hold_meeting(status: MatchStatus) -> MatchStatus:
    """A scheduled meeting took place."""
    if status.state is not MatchState.MEETING_SCHEDULED:
        raise IllegalTransition(f"the match is {status.state.value}; only a scheduled meeting can be held")
    return MatchStatus(MatchState.MEETING_HELD, status.opportunity_side, status.counterpart_side)


# -- scores --------------------------------------------------------------------------


@dataclass(frozen=True)
class FeedbackWeights:
    """How much feedback moves a ranking."""

    pair: float = 0.25
    counterpart: float = 0.05


def feedback_score(pair_net: int, counterpart_net: int, weights: FeedbackWeights) -> float:
    """Score added to a candidate from feedback.

    ``pair_net`` is (useful − not useful) for this very pair (query, candidate):
    it moves the candidate by up to ±``weights.pair``. ``counterpart_net`` is the
    same count over every match of the candidate: a small, saturating nudge that
    generalises what users found useful to other queries.
    """
    pair = max(-1.0, min(1.0, float(pair_net)))
    return weights.pair * pair + weights.counterpart * math.tanh(counterpart_net / 2.0)


def fuse(bm25_normalised: float, dense: float, bm25_weight: float) -> float:
    """Normalised weighted sum: BM25 divided by the best BM25 among the eligible, cosine clipped at 0."""
    return bm25_weight * bm25_normalised + (1.0 - bm25_weight) * max(0.0, dense)
