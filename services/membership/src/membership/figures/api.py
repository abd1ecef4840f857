"""HTTP routes of the figures: an organisation's yearly figures, the district's aggregates."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Path

from distretto_shared.conventions import Id
from membership.common import CallerCtx, PublicCtx
from membership.figures import service
from membership.figures.models import DistrictFiguresPublic, YearlyFiguresCreate, YearlyFiguresPublic

router = APIRouter()

Year = Annotated[int, Path(ge=1900, le=2100, description="Calendar year of the figures")]


@router.put("/organisations/{organisation_id}/figures/{year}", response_model=YearlyFiguresPublic, tags=["figures"])
async def set_figures(
    ctx: CallerCtx, organisation_id: Id, year: Year, body: YearlyFiguresCreate
) -> YearlyFiguresPublic:
    """Record or correct an organisation's figures for a year."""
    return await service.set_figures(ctx, organisation_id, year, body)


@router.get("/organisations/{organisation_id}/figures", response_model=list[YearlyFiguresPublic], tags=["figures"])
async def list_figures(ctx: CallerCtx, organisation_id: Id) -> list[YearlyFiguresPublic]:
    """Every year's figures of an organisation, latest first (a few rows: not paginated)."""
    return await service.list_figures(ctx, organisation_id)


@router.get("/figures", response_model=DistrictFiguresPublic, tags=["figures"])
async def district_figures(ctx: PublicCtx) -> DistrictFiguresPublic:
    """The district's live aggregate figures (public)."""
    return await service.figures_now(ctx)
