"""HTTP routes of the ranking: counterparts of an opportunity, opportunities for an organisation, the index."""

from __future__ import annotations

from fastapi import APIRouter

from distretto_shared.web import Page
from matchmaking.routing import Country, Ctx, Id, Kind, OrganisationId, PageDep, Sector, Target
from matchmaking.search import service
from matchmaking.search.models import IndexStats, RankedCounterpart

router = APIRouter()


def _filters(sector: str | None, kind: str | None, country: str | None, include_expired: bool) -> service.RankFilters:
    return service.RankFilters(
        sector=sector, kind=kind, country=country.upper() if country else None, include_expired=include_expired
    )


@router.get(
    "/opportunities/{opportunity_id}/counterparts",
    tags=["ranking"],
    summary="Best counterpart opportunities and competence profiles, with score parts and explanations",
)
async def counterparts(
    ctx: Ctx,
    opportunity_id: Id,
    page: PageDep,
    target: Target = "all",
    sector: Sector = None,
    kind: Kind = None,
    country: Country = None,
    include_expired: bool = False,
) -> Page[RankedCounterpart]:
    return await service.rank_for_opportunity(
        ctx, opportunity_id, page, target=target, filters=_filters(sector, kind, country, include_expired)
    )


@router.get(
    "/organisations/{organisation_id}/opportunities",
    tags=["ranking"],
    summary="Opportunities that fit an organisation, with score parts and explanations",
)
async def opportunities_for_organisation(
    ctx: Ctx,
    organisation_id: OrganisationId,
    page: PageDep,
    sector: Sector = None,
    country: Country = None,
    include_expired: bool = False,
) -> Page[RankedCounterpart]:
    return await service.rank_for_organisation(
        ctx, organisation_id, page, filters=_filters(sector, None, country, include_expired)
    )


@router.get("/index", tags=["operations"], summary="What the ranking index holds")
async def index_stats(ctx: Ctx) -> IndexStats:
    return await service.index_stats(ctx)
