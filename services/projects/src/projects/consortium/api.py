"""HTTP routes of the consortium: participants, member organisations."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response

from distretto_shared.web import Page
from projects.consortium import service
from projects.consortium.models import MemberOrganisationPublic, ParticipantCreate, ParticipantPublic, ParticipantUpdate
from projects.routing import Ctx, Paging, PathId
from projects.vocabulary import ParticipantRoleIn

router = APIRouter()


@router.post("/projects/{project_id}/participants", status_code=201, tags=["consortium"], summary="Add a participant")
async def add_participant(project_id: PathId, body: ParticipantCreate, ctx: Ctx) -> ParticipantPublic:
    return await service.add_participant(ctx, project_id, body)


@router.get("/projects/{project_id}/participants", tags=["consortium"], summary="A project's consortium")
async def list_participants(
    project_id: PathId,
    ctx: Ctx,
    page: Paging,
    role: ParticipantRoleIn | None = None,
    country: Annotated[str | None, Query(min_length=2, max_length=2)] = None,
    linked: Annotated[bool | None, Query(description="only participants that are (not) member organisations")] = None,
) -> Page[ParticipantPublic]:
    return await service.list_participants(
        ctx, project_id, page, role=role.value if role else None, country=country, linked=linked
    )


@router.get("/projects/{project_id}/participants/{participant_id}", tags=["consortium"], summary="One participant")
async def get_participant(project_id: PathId, participant_id: PathId, ctx: Ctx) -> ParticipantPublic:
    return await service.get_participant(ctx, project_id, participant_id)


@router.patch("/projects/{project_id}/participants/{participant_id}", tags=["consortium"], summary="Change one")
async def update_participant(
    project_id: PathId, participant_id: PathId, body: ParticipantUpdate, ctx: Ctx
) -> ParticipantPublic:
    return await service.update_participant(ctx, project_id, participant_id, body)


@router.delete(
    "/projects/{project_id}/participants/{participant_id}", status_code=204, tags=["consortium"], summary="Remove one"
)
async def delete_participant(project_id: PathId, participant_id: PathId, ctx: Ctx) -> Response:
    await service.delete_participant(ctx, project_id, participant_id)
    return Response(status_code=204)


@router.get("/organisations", tags=["consortium"], summary="Member organisations known from the membership events")
async def list_organisations(ctx: Ctx, page: Paging) -> Page[MemberOrganisationPublic]:
    return await service.list_organisations(ctx, page)
