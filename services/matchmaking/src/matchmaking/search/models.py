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
