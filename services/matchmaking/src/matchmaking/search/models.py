"""API shapes of the ranking."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel

from distretto_shared.conventions import Id


class ScoreParts(BaseModel):
    """How a score was made."""

    bm25: float
    bm25_normalised: float
    dense: float
    fused: float
    feedback: float


class RankedCounterpart(BaseModel):
    """One ranked result."""

    counterpart_type: str
    """opportunity or profile"""
    counterpart_id: Id
    title: str
    score: float
    score_parts: ScoreParts
    explanation: dict[str, Any]


class IndexStats(BaseModel):
    """What the ranking engine holds."""

    opportunities: int
    profiles: int
    bm25_main_rows: int
    bm25_delta_rows: int
    items: int
    """Encoded items in this instance's index (each a vector)."""
    items_pending: int
    """Items of indexed documents still waiting for their vector (searchable by BM25 only until then)."""
    change_position: int
    """The last change-log entry this instance has applied."""
    changes_behind: int
    """Change-log entries written (by any instance) that this instance has not applied yet."""
