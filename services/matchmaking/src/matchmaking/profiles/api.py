"""HTTP routes of competence profiles."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from distretto_shared.web import Page
from matchmaking.profiles import service
from matchmaking.profiles.models import OrganisationPublic
from matchmaking.routing import Ctx, OrganisationId, PageDep

router = APIRouter()


@router.get("/organisations", tags=["organisations"], summary="Competence profiles")
async def list_organisations(
    ctx: Ctx,
    page: PageDep,
    status: Annotated[str | None, Query(pattern="^(applied|active|rejected|suspended|lapsed|left)$")] = None,
) -> Page[OrganisationPublic]:
    return await service.list_organisations(ctx, page, status=status)


@router.get("/organisations/{organisation_id}", tags=["organisations"], summary="One competence profile")
async def get_organisation(ctx: Ctx, organisation_id: OrganisationId) -> OrganisationPublic:
    return await service.get_organisation(ctx, organisation_id)
