"""HTTP routes of opportunities (owner and staff view, and the anonymised public view)."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from distretto_shared.conventions import canonical_id
from distretto_shared.web import Page
from matchmaking.opportunities import service
from matchmaking.opportunities.domain import OpportunityStatus, OpportunityType
from matchmaking.opportunities.models import (
    OpportunityAnonymous,
    OpportunityCreate,
    OpportunityPublic,
    OpportunityUpdate,
    RenewRequest,
)
from matchmaking.routing import Ctx, Id, PageDep, PublicCtx, Sector

router = APIRouter()


@router.post("/opportunities", status_code=201, tags=["opportunities"], summary="Publish an opportunity")
async def create_opportunity(ctx: Ctx, body: OpportunityCreate) -> OpportunityPublic:
    return await service.create_opportunity(ctx, body)


@router.get("/opportunities", tags=["opportunities"], summary="List opportunities (owner/staff view)")
async def list_opportunities(
    ctx: Ctx,
    page: PageDep,
    opportunity_type: OpportunityType | None = None,
    status: OpportunityStatus | None = None,
    owner_organisation_id: Annotated[str | None, Query(max_length=64)] = None,
    sector: Sector = None,
    reference: Annotated[str | None, Query(max_length=64)] = None,
) -> Page[OpportunityPublic]:
    return await service.list_opportunities(
        ctx,
        page,
        opportunity_type=opportunity_type.value if opportunity_type else None,
        status=status.value if status else None,
        owner=canonical_id(owner_organisation_id),
        sector=sector,
        reference=reference,
    )


@router.get("/opportunities/{opportunity_id}", tags=["opportunities"], summary="One opportunity")
async def get_opportunity(ctx: Ctx, opportunity_id: Id) -> OpportunityPublic:
    return await service.get_opportunity(ctx, opportunity_id)


@router.patch("/opportunities/{opportunity_id}", tags=["opportunities"], summary="Change an opportunity")
async def update_opportunity(ctx: Ctx, opportunity_id: Id, body: OpportunityUpdate) -> OpportunityPublic:
    return await service.update_opportunity(ctx, opportunity_id, body)


@router.post("/opportunities/{opportunity_id}/renew", tags=["opportunities"], summary="Extend an opportunity")
async def renew_opportunity(ctx: Ctx, opportunity_id: Id, body: RenewRequest) -> OpportunityPublic:
    return await service.renew_opportunity(ctx, opportunity_id, body)


@router.post(
    "/opportunities/{opportunity_id}/withdraw", tags=["opportunities"], summary="Take an opportunity off the market"
)
async def withdraw_opportunity(ctx: Ctx, opportunity_id: Id) -> OpportunityPublic:
    return await service.withdraw_opportunity(ctx, opportunity_id)


@router.get("/public/opportunities", tags=["public"], summary="Published opportunities, anonymised")
async def public_opportunities(
    ctx: PublicCtx, page: PageDep, opportunity_type: OpportunityType | None = None, sector: Sector = None
) -> Page[OpportunityAnonymous]:
    return await service.list_public(
        ctx, page, opportunity_type=opportunity_type.value if opportunity_type else None, sector=sector
    )


@router.get("/public/opportunities/{opportunity_id}", tags=["public"], summary="One published opportunity, anonymised")
async def public_opportunity(ctx: PublicCtx, opportunity_id: Id) -> OpportunityAnonymous:
    return await service.get_public(ctx, opportunity_id)
