"""Pure rules of the match lifecycle.

No I/O and no framework here.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum


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
