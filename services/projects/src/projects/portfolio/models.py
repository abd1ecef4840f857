"""API shapes of the portfolio figures."""

from __future__ import annotations

from projects.tables import Base


class BucketPublic(Base):
    """Count and budgets of a group of projects."""

    projects: int
    total_cost: float
    ec_max_contribution: float


class PortfolioPublic(Base):
    """Portfolio figures."""

    overall: BucketPublic
    by_programme: dict[str, BucketPublic]
    by_funding_scheme: dict[str, BucketPublic]
    by_thematic_area: dict[str, BucketPublic]
    by_status: dict[str, BucketPublic]
    by_foundation_role: dict[str, BucketPublic]
    foundation_projects: int
    foundation_ec_contribution: float
