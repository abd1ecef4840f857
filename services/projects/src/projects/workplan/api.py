"""HTTP routes of the work plan: work packages, deliverables, milestones, reporting periods."""

from __future__ import annotations

from typing import Annotated

from fastapi import APIRouter, Query, Response

from distretto_shared.conventions import IsoDate
from distretto_shared.web import Page
from projects.routing import Ctx, Paging, PathId
from projects.vocabulary import DeliverableStatus
from projects.workplan import service
from projects.workplan.models import (
    DeliverableAccept,
    DeliverableCreate,
    DeliverablePublic,
    DeliverableSubmit,
    DeliverableUpdate,
    MilestoneCreate,
    MilestonePublic,
    MilestoneReach,
    MilestoneUpdate,
    ReportingPeriodCreate,
    ReportingPeriodPublic,
    ReportingPeriodUpdate,
    WorkPackageCreate,
    WorkPackagePublic,
    WorkPackageUpdate,
)

router = APIRouter()


@router.post("/projects/{project_id}/work-packages", status_code=201, tags=["work plan"], summary="Add a WP")
async def add_work_package(project_id: PathId, body: WorkPackageCreate, ctx: Ctx) -> WorkPackagePublic:
    return await service.add_work_package(ctx, project_id, body)


@router.get("/projects/{project_id}/work-packages", tags=["work plan"], summary="A project's work packages")
async def list_work_packages(project_id: PathId, ctx: Ctx, page: Paging) -> Page[WorkPackagePublic]:
    return await service.list_work_packages(ctx, project_id, page)


@router.get("/projects/{project_id}/work-packages/{wp_id}", tags=["work plan"], summary="One work package")
async def get_work_package(project_id: PathId, wp_id: PathId, ctx: Ctx) -> WorkPackagePublic:
    return await service.get_work_package(ctx, project_id, wp_id)


@router.patch("/projects/{project_id}/work-packages/{wp_id}", tags=["work plan"], summary="Change a work package")
async def update_work_package(
    project_id: PathId, wp_id: PathId, body: WorkPackageUpdate, ctx: Ctx
) -> WorkPackagePublic:
    return await service.update_work_package(ctx, project_id, wp_id, body)


@router.delete("/projects/{project_id}/work-packages/{wp_id}", status_code=204, tags=["work plan"], summary="Remove")
async def delete_work_package(project_id: PathId, wp_id: PathId, ctx: Ctx) -> Response:
    await service.delete_work_package(ctx, project_id, wp_id)
    return Response(status_code=204)


# -- deliverables -------------------------------------------------------------------


@router.post("/projects/{project_id}/deliverables", status_code=201, tags=["work plan"], summary="Add a deliverable")
async def add_deliverable(project_id: PathId, body: DeliverableCreate, ctx: Ctx) -> DeliverablePublic:
    return await service.add_deliverable(ctx, project_id, body)


@router.get("/projects/{project_id}/deliverables", tags=["work plan"], summary="A project's deliverables")
async def list_project_deliverables(
    project_id: PathId,
    ctx: Ctx,
    page: Paging,
    status: DeliverableStatus | None = None,
    work_package: Annotated[int | None, Query(ge=1, le=99)] = None,
    due_before: IsoDate | None = None,
    due_after: IsoDate | None = None,
) -> Page[DeliverablePublic]:
    filters = service.DeliverableFilters(
        project_id=project_id,
        status=status.value if status else None,
        work_package=work_package,
        due_before=due_before,
        due_after=due_after,
    )
    return await service.list_deliverables(ctx, filters, page)


@router.get("/deliverables", tags=["work plan"], summary="Deliverables of every project, soonest due first")
async def list_deliverables(
    ctx: Ctx,
    page: Paging,
    status: DeliverableStatus | None = None,
    due_before: IsoDate | None = None,
    due_after: IsoDate | None = None,
) -> Page[DeliverablePublic]:
    filters = service.DeliverableFilters(
        status=status.value if status else None, due_before=due_before, due_after=due_after
    )
    return await service.list_deliverables(ctx, filters, page)


@router.get("/projects/{project_id}/deliverables/{deliverable_id}", tags=["work plan"], summary="One deliverable")
async def get_deliverable(project_id: PathId, deliverable_id: PathId, ctx: Ctx) -> DeliverablePublic:
    return await service.get_deliverable(ctx, project_id, deliverable_id)


@router.patch("/projects/{project_id}/deliverables/{deliverable_id}", tags=["work plan"], summary="Change its plan")
async def update_deliverable(
    project_id: PathId, deliverable_id: PathId, body: DeliverableUpdate, ctx: Ctx
) -> DeliverablePublic:
    return await service.update_deliverable(ctx, project_id, deliverable_id, body)


@router.delete(
    "/projects/{project_id}/deliverables/{deliverable_id}", status_code=204, tags=["work plan"], summary="Remove"
)
async def delete_deliverable(project_id: PathId, deliverable_id: PathId, ctx: Ctx) -> Response:
    await service.delete_deliverable(ctx, project_id, deliverable_id)
    return Response(status_code=204)


@router.post("/projects/{project_id}/deliverables/{deliverable_id}/submit", tags=["work plan"], summary="Submit")
async def submit_deliverable(
    project_id: PathId, deliverable_id: PathId, ctx: Ctx, body: DeliverableSubmit | None = None
) -> DeliverablePublic:
    return await service.submit_deliverable(ctx, project_id, deliverable_id, body.submitted_on if body else None)


@router.post("/projects/{project_id}/deliverables/{deliverable_id}/accept", tags=["work plan"], summary="Accepted")
async def accept_deliverable(
    project_id: PathId, deliverable_id: PathId, ctx: Ctx, body: DeliverableAccept | None = None
) -> DeliverablePublic:
    return await service.accept_deliverable(ctx, project_id, deliverable_id, body.accepted_on if body else None)


# -- milestones and reporting periods ------------------------------------------------


@router.post("/projects/{project_id}/milestones", status_code=201, tags=["work plan"], summary="Add a milestone")
async def add_milestone(project_id: PathId, body: MilestoneCreate, ctx: Ctx) -> MilestonePublic:
    return await service.add_milestone(ctx, project_id, body)


@router.get("/projects/{project_id}/milestones", tags=["work plan"], summary="A project's milestones")
async def list_milestones(project_id: PathId, ctx: Ctx, page: Paging) -> Page[MilestonePublic]:
    return await service.list_milestones(ctx, project_id, page)


@router.get("/projects/{project_id}/milestones/{milestone_id}", tags=["work plan"], summary="One milestone")
async def get_milestone(project_id: PathId, milestone_id: PathId, ctx: Ctx) -> MilestonePublic:
    return await service.get_milestone(ctx, project_id, milestone_id)


@router.patch("/projects/{project_id}/milestones/{milestone_id}", tags=["work plan"], summary="Change a milestone")
async def update_milestone(
    project_id: PathId, milestone_id: PathId, body: MilestoneUpdate, ctx: Ctx
) -> MilestonePublic:
    return await service.update_milestone(ctx, project_id, milestone_id, body)


@router.delete(
    "/projects/{project_id}/milestones/{milestone_id}", status_code=204, tags=["work plan"], summary="Remove"
)
async def delete_milestone(project_id: PathId, milestone_id: PathId, ctx: Ctx) -> Response:
    await service.delete_milestone(ctx, project_id, milestone_id)
    return Response(status_code=204)


@router.post("/projects/{project_id}/milestones/{milestone_id}/reach", tags=["work plan"], summary="Reached")
async def reach_milestone(
    project_id: PathId, milestone_id: PathId, ctx: Ctx, body: MilestoneReach | None = None
) -> MilestonePublic:
    return await service.reach_milestone(ctx, project_id, milestone_id, body.reached_on if body else None)


@router.post("/projects/{project_id}/reporting-periods", status_code=201, tags=["work plan"], summary="Add a period")
async def add_reporting_period(project_id: PathId, body: ReportingPeriodCreate, ctx: Ctx) -> ReportingPeriodPublic:
    return await service.add_reporting_period(ctx, project_id, body)


@router.get("/projects/{project_id}/reporting-periods", tags=["work plan"], summary="A project's reporting periods")
async def list_reporting_periods(project_id: PathId, ctx: Ctx, page: Paging) -> Page[ReportingPeriodPublic]:
    return await service.list_reporting_periods(ctx, project_id, page)


@router.patch("/projects/{project_id}/reporting-periods/{period_id}", tags=["work plan"], summary="Change a period")
async def update_reporting_period(
    project_id: PathId, period_id: PathId, body: ReportingPeriodUpdate, ctx: Ctx
) -> ReportingPeriodPublic:
    return await service.update_reporting_period(ctx, project_id, period_id, body)


@router.delete(
    "/projects/{project_id}/reporting-periods/{period_id}", status_code=204, tags=["work plan"], summary="Remove"
)
async def delete_reporting_period(project_id: PathId, period_id: PathId, ctx: Ctx) -> Response:
    await service.delete_reporting_period(ctx, project_id, period_id)
    return Response(status_code=204)
