"""HTTP route of the portfolio figures."""

from __future__ import annotations

from fastapi import APIRouter

from projects.portfolio import service
from projects.portfolio.models import PortfolioPublic
from projects.routing import Ctx
from projects.vocabulary import FoundationRole

router = APIRouter()


@router.get("/portfolio", tags=["portfolio"], summary="Portfolio figures")
async def portfolio(ctx: Ctx, foundation_role: FoundationRole | None = None) -> PortfolioPublic:
    return await service.portfolio(ctx, foundation_role.value if foundation_role else None)
