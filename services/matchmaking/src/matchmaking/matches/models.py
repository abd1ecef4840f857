"""The match and match-feedback tables and their API shapes."""

from __future__ import annotations

from datetime import date
from typing import Any

import sqlalchemy as sa
from pydantic import AwareDatetime, BaseModel, Field, model_validator
from sqlmodel import Field as SQLField

from distretto_shared.conventions import Id, StrictFloat, StrictInt, UtcDateTime, canonical_id, hex_id
from matchmaking.matches.domain import Decision, MatchState, Side
from matchmaking.tables import Base, Strict, UtcDatetime, json_column, new_id, timestamp_column


class Match(Base, table=True):
    """A proposed pairing of an opportunity with a counterpart opportunity or profile."""

    __tablename__ = "match"
    __table_args__ = (
        sa.UniqueConstraint("opportunity_id", "counterpart_type", "counterpart_id", name="uq_match_pair"),
    )

    id: str = SQLField(default_factory=new_id, primary_key=True, max_length=64)
    opportunity_id: str = SQLField(max_length=64, index=True)
    counterpart_type: str = SQLField(max_length=16)
    counterpart_id: str = SQLField(max_length=64, index=True)
    state: str = SQLField(default=MatchState.PROPOSED.value, max_length=20, index=True)
    opportunity_side: str = SQLField(default=Decision.PENDING.value, max_length=10)
    counterpart_side: str = SQLField(default=Decision.PENDING.value, max_length=10)
    score: float = 0.0
    score_parts: dict[str, Any] = json_column(dict)
    explanation: dict[str, Any] = json_column(dict)
    meeting_at: UtcDateTime | None = SQLField(default=None, sa_column=sa.Column(sa.DateTime(timezone=True)))
    meeting_place: str | None = SQLField(default=None, max_length=300)
    held_on: date | None = None
    created_at: UtcDateTime = timestamp_column()
    updated_at: UtcDateTime = timestamp_column()


class MatchFeedback(Base, table=True):
    """One side's verdict on a match: useful or not (one per side, the latest wins)."""

    __tablename__ = "match_feedback"

    match_id: str = SQLField(primary_key=True, max_length=64)
    side: str = SQLField(primary_key=True, max_length=16)
    useful: bool
    comment: str = SQLField(default="", sa_type=sa.Text)
    created_at: UtcDateTime = timestamp_column()


class MatchCreate(Strict):
    """Propose a match between an opportunity and a counterpart."""

    opportunity_id: Id = Field(min_length=1, max_length=64)
    counterpart_type: str = Field(pattern="^(opportunity|profile)$")
    counterpart_id: Id = Field(min_length=1, max_length=64)

    @model_validator(mode="after")
    def _stored_ids(self) -> MatchCreate:
        # Either id form is taken: opportunity ids are kept 32-hex, organisation ids dashed.
        self.opportunity_id = hex_id(self.opportunity_id)
        self.counterpart_id = (hex_id if self.counterpart_type == "opportunity" else canonical_id)(self.counterpart_id)
        return self


class ProposeRequest(Strict):
    """Ask the engine for the best counterparts of an opportunity and propose them as matches."""

    limit: StrictInt = Field(default=5, ge=1, le=50)
    min_score: StrictFloat = Field(default=0.0, ge=0.0, le=2.0)
    target: str = Field(default="all", pattern="^(all|opportunities|profiles)$")


class DecisionRequest(Strict):
    """One side answers a proposed match."""

    side: Side


class MeetingRequest(Strict):
    """Schedule the meeting of an accepted match."""

    scheduled_at: AwareDatetime
    """With its offset (``2025-05-01T10:00:00Z``): a time without one is refused."""
    place: str | None = Field(default=None, max_length=300)


class MeetingHeldRequest(Strict):
    """Record that the meeting took place."""

    held_on: date | None = None


class FeedbackRequest(Strict):
    """Was this match useful to you?"""

    side: Side
    useful: bool
    comment: str = Field(default="", max_length=2000)


class MatchPublic(BaseModel):
    """A match and where it stands."""

    id: Id
    opportunity_id: Id
    counterpart_type: str
    counterpart_id: Id
    state: str
    opportunity_side: str
    counterpart_side: str
    score: float
    score_parts: dict[str, Any]
    explanation: dict[str, Any]
    meeting_at: UtcDatetime | None
    meeting_place: str | None
    held_on: date | None
    feedback: dict[str, bool] = {}
    created_at: UtcDatetime
    updated_at: UtcDatetime
