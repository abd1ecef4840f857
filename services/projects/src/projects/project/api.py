"""HTTP routes of projects: request → use case → response."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query

from distretto_shared.web import Page
from projects.project import service
from projects.project.models import ProjectCreate, ProjectPublic, ProjectUpdate
from projects.routing import Ctx, Paging, PathId
from projects.vocabulary import FoundationRole, ProjectStatusIn

router = APIRouter()


@router.post("/projects", status_code=201, tags=["projects"], summary="Register a project")
async def create_project(body: ProjectCreate, ctx: Ctx) -> ProjectPublic:
    return await service.register_project(ctx, body)


@router.get("/projects", tags=["projects"], summary="List projects (filtered, paginated)")
async def list_projects(
    ctx: Ctx,
    page: Paging,
    status: ProjectStatusIn | None = None,
    framework_programme: Annotated[str | None, Query(max_length=50)] = None,
    funding_scheme: Annotated[str | None, Query(max_length=100)] = None,
    foundation_role: FoundationRole | None = None,
    thematic_area: Annotated[str | None, Query(max_length=50)] = None,
    organisation_id: Annotated[str | None, Query(max_length=64, description="member organisation taking part")] = None,
    q: Annotated[str | None, Query(max_length=200, description="text in acronym or title")] = None,
) -> Page[ProjectPublic]:
    filters = service.ProjectFilters(
        status=status.value if status else None,
        framework_programme=framework_programme,
        funding_scheme=funding_scheme,
        foundation_role=foundation_role.value if foundation_role else None,
        thematic_area=thematic_area,
        organisation_id=organisation_id,
        q=q,
    )
    return await service.list_projects(ctx, filters, page)


@router.get("/projects/{project_id}", tags=["projects"], summary="One project")
async def get_project(project_id: PathId, ctx: Ctx) -> ProjectPublic:
    return await service.get_project(ctx, project_id)


@router.patch("/projects/{project_id}", tags=["projects"], summary="Change a project")
async def update_project(project_id: PathId, body: ProjectUpdate, ctx: Ctx) -> ProjectPublic:
    return await service.update_project(ctx, project_id, body)
