"""Pure rules of the portfolio figures."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, field

from projects.vocabulary import FoundationRole


@dataclass
class Bucket:
    """Count and budgets of a group of projects."""

    projects: int = 0
    total_cost: float = 0.0
    ec_max_contribution: float = 0.0

    def add(self, total_cost: float | None, ec: float | None) -> None:
        """Count one project in this bucket."""
        self.projects += 1
        self.total_cost += total_cost or 0.0
        self.ec_max_contribution += ec or 0.0


@dataclass(frozen=True)
class PortfolioProject:
    """What the portfolio needs of a project."""

    status: str
    framework_programme: str | None
    funding_scheme: str | None
    thematic_areas: list[str]
    total_cost: float | None
    ec_max_contribution: float | None
    foundation_role: str
    foundation_ec_contribution: float
    """EC contribution of the foundation's own participations in this project."""


@dataclass
class Portfolio:
    """Portfolio figures: overall, by programme, scheme, thematic area, status; the foundation's share."""

    overall: Bucket = field(default_factory=Bucket)
    by_programme: dict[str, Bucket] = field(default_factory=dict)
    by_funding_scheme: dict[str, Bucket] = field(default_factory=dict)
    by_thematic_area: dict[str, Bucket] = field(default_factory=dict)
    by_status: dict[str, Bucket] = field(default_factory=dict)
    by_foundation_role: dict[str, Bucket] = field(default_factory=dict)
    foundation_ec_contribution: float = 0.0
    foundation_projects: int = 0


def portfolio(projects: Iterable[PortfolioProject]) -> Portfolio:
    """Aggregate projects into portfolio figures.

    A project with several thematic areas counts in each of them (the areas'
    sums may exceed the overall total); one without any counts as "unassigned".
    """
    out = Portfolio()
    for p in projects:
        out.overall.add(p.total_cost, p.ec_max_contribution)
        for key, groups in (
            (p.framework_programme or "unknown", out.by_programme),
            (p.funding_scheme or "unknown", out.by_funding_scheme),
            (p.status, out.by_status),
            (p.foundation_role, out.by_foundation_role),
        ):
            groups.setdefault(key, Bucket()).add(p.total_cost, p.ec_max_contribution)
        for area in p.thematic_areas or ["unassigned"]:
            out.by_thematic_area.setdefault(area, Bucket()).add(p.total_cost, p.ec_max_contribution)
        out.foundation_ec_contribution += p.foundation_ec_contribution
        if p.foundation_role != FoundationRole.NONE:
            out.foundation_projects += 1
    return out
