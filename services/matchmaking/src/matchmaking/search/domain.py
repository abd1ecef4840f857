"""Pure rules of the ranking: which counterparts answer an opportunity, feedback, fusion.

No I/O and no framework here.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from matchmaking.opportunities.domain import OpportunityType

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


def calibrate(dense: float, floor: float) -> float:
    """A cosine rescaled so that ``floor`` (what unrelated texts score) is 0 and 1 stays 1; clipped at 0."""
    return max(0.0, (dense - floor) / (1.0 - floor))


def fuse(bm25_normalised: float, dense: float, bm25_weight: float, dense_floor: float = 0.0) -> float:
    """Normalised weighted sum: BM25 divided by the best BM25 among the eligible, the calibrated cosine."""
    return bm25_weight * bm25_normalised + (1.0 - bm25_weight) * calibrate(dense, dense_floor)
