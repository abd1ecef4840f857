"""Use case of the portfolio figures."""

from __future__ import annotations

from sqlalchemy import func
from sqlmodel import select

from projects.consortium.models import Participant
from projects.portfolio import domain
from projects.portfolio.models import BucketPublic, PortfolioPublic
from projects.project.models import Project
from projects.unit import Ctx


async def portfolio(ctx: Ctx, foundation_role: str | None = None) -> PortfolioPublic:
    """Counts and budgets by programme, funding scheme, thematic area and status; the foundation's share."""
    async with ctx.db.read() as session:
        stmt = select(Project)
        if foundation_role:
            stmt = stmt.where(Project.foundation_role == foundation_role)
        projects = (await session.execute(stmt)).scalars().all()
        contributions: dict[str, float] = {}
        for pid, ec in await session.execute(
            select(Participant.project_id, func.sum(Participant.ec_contribution))
            .where(Participant.is_foundation.is_(True))  # type: ignore[attr-defined]
            .group_by(Participant.project_id)
        ):
            contributions[pid] = float(ec or 0)
    figures = domain.portfolio(
        domain.PortfolioProject(
            status=p.status,
            framework_programme=p.framework_programme,
            funding_scheme=p.funding_scheme,
            thematic_areas=list(p.thematic_areas),
            total_cost=p.total_cost,
            ec_max_contribution=p.ec_max_contribution,
            foundation_role=p.foundation_role,
            foundation_ec_contribution=contributions.get(p.id, 0.0),
        )
        for p in projects
    )

    def b(bucket: domain.Bucket) -> BucketPublic:
        return BucketPublic(
            projects=bucket.projects,
            total_cost=round(bucket.total_cost, 2),
            ec_max_contribution=round(bucket.ec_max_contribution, 2),
        )

    return PortfolioPublic(
        overall=b(figures.overall),
        by_programme={k: b(v) for k, v in sorted(figures.by_programme.items())},
        by_funding_scheme={k: b(v) for k, v in sorted(figures.by_funding_scheme.items())},
        by_thematic_area={k: b(v) for k, v in sorted(figures.by_thematic_area.items())},
        by_status={k: b(v) for k, v in sorted(figures.by_status.items())},
        by_foundation_role={k: b(v) for k, v in sorted(figures.by_foundation_role.items())},
        foundation_projects=figures.foundation_projects,
        foundation_ec_contribution=round(figures.foundation_ec_contribution, 2),
    )
